//! `brief send` and `brief status` end to end: the real binary against real SMTP servers
//! (Postfix's smtp-sink, a scripted aiosmtpd) and the outbox transport.

use crate::harness::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn assert_contract_headers(msg: &str) {
    for h in [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ] {
        assert!(header(msg, h).is_some(), "no {h} in\n{msg}");
    }
    assert_eq!(
        header(msg, "List-Unsubscribe-Post").unwrap(),
        "List-Unsubscribe=One-Click"
    );
    let lu = header(msg, "List-Unsubscribe").unwrap();
    assert!(lu.starts_with("<https://news.example.org/brief/u/"), "{lu}");
    assert!(lu.contains("<mailto:unsubscribe@news.example.org?subject=unsubscribe-"));
    assert!(
        !lu.contains('@') || !lu.split("mailto:").next().unwrap().contains('@'),
        "address in the URL: {lu}"
    );
    assert_eq!(
        header(msg, "List-Id").unwrap(),
        "The Test Brief <test-brief.news.example.org>"
    );
    assert!(header(msg, "Content-Type")
        .unwrap()
        .starts_with("multipart/alternative"));
    let plain = msg.find("Content-Type: text/plain").expect("text part");
    let html = msg.find("Content-Type: text/html").expect("html part");
    assert!(plain < html, "text/plain must come first");
}

#[test]
fn full_smtp_send_delivers_each_reader_once_and_a_second_run_sends_nothing() {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated(120, Some(sink.port));
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("readers.csv:4:1"),
        "bad row reported by file:line: {stderr}"
    );

    let counts = sink.counts();
    let expected: BTreeSet<String> = nl.readers.iter().cloned().collect();
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    let messages = sink.messages();
    for (rcpt, msg) in &messages {
        assert_contract_headers(msg);
        assert!(header(msg, "To")
            .unwrap()
            .to_lowercase()
            .contains(rcpt.as_str()));
        assert_eq!(header(msg, "Subject").unwrap(), "Night trains are back");
    }
    let ids: BTreeSet<String> = messages
        .iter()
        .map(|(_, m)| header(m, "Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), messages.len(), "Message-IDs are unique");

    let s = nl.status(false);
    assert_eq!(n(&s, "sent"), 120);
    assert_eq!(n(&s, "invalid"), 1);
    assert_eq!(n(&s, "pending") + n(&s, "deferred") + n(&s, "in_doubt"), 0);
    assert_eq!(s["state"], "complete");

    let again = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&again), Some(0));
    assert!(stdout(&again).contains("complete, nothing to send"));
    assert_eq!(sink.messages().len(), 120, "a second run sends nothing");
}

#[test]
fn temporary_refusal_is_deferred_then_delivered_once_when_due() {
    let server = Server::aiosmtpd(json!({"defer_once": ["reader0003@example.org"]}));
    let nl = Newsletter::generated(10, Some(server.port));
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(3), "deferred recipients remain");
    assert!(
        stdout(&out).contains("next attempt 2026-11-20T09:05:00Z"),
        "{}",
        stdout(&out)
    );
    let s = nl.status(false);
    assert_eq!((n(&s, "sent"), n(&s, "deferred")), (9, 1));
    assert_eq!(s["next_retry"], "2026-11-20T09:05:00Z");
    assert!(!server.counts().contains_key("reader0003@example.org"));

    // Not due yet: nothing happens.
    let early = nl.run_at("2026-11-20T09:04:00Z", &["send", "--edition", "e1"]);
    assert_eq!(code(&early), Some(3));
    assert!(stdout(&early).contains("nothing due now"));
    assert_eq!(server.messages().len(), 9);

    let later = nl.run_at("2026-11-20T09:06:00Z", &["send", "--edition", "e1"]);
    assert_eq!(code(&later), Some(0));
    let counts = server.counts();
    assert_eq!(counts.get("reader0003@example.org"), Some(&1));
    assert!(counts.values().all(|&c| c == 1));
    assert_eq!(counts.len(), 10);
}

#[test]
fn permanent_refusal_bounces_one_and_the_rest_is_sent() {
    let server =
        Server::aiosmtpd(json!({"reject": {"reader0005@example.org": "550 5.1.1 no such user"}}));
    let nl = Newsletter::generated(12, Some(server.port));
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let s = nl.status(false);
    assert_eq!((n(&s, "sent"), n(&s, "bounced")), (11, 1));
    assert_eq!(nl.recipients("bounced"), vec!["reader0005@example.org"]);
    let counts = server.counts();
    assert_eq!(counts.len(), 11);
    assert!(!counts.contains_key("reader0005@example.org"));
}

#[test]
fn ten_identical_refusals_in_a_row_stop_the_run_without_bouncing_anyone() {
    let server = Server::aiosmtpd(json!({"reject_all": "550 5.7.1 relaying denied"}));
    let nl = Newsletter::generated_with(30, Some(server.port), "concurrency = 4");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("relaying denied"));
    let s = nl.status(false);
    assert_eq!(n(&s, "bounced"), 0);
    assert_eq!(n(&s, "pending"), 30);
}

#[test]
fn hang_up_after_the_final_dot_leaves_recipients_in_doubt_until_asked() {
    let port = free_port();
    let nl = Newsletter::generated_with(4, Some(port), "concurrency = 2");
    {
        let _sink = Server::smtp_sink_on(port, &["-q", "."]);
        let out = nl.run(&["send", "--edition", "e1"]);
        assert_eq!(code(&out), Some(3));
        assert!(stdout(&out).contains("in doubt"));
    }
    // The Message-IDs the journal recorded when the bodies were handed over.
    let db = rusqlite::Connection::open(nl.root().join("state/brief.db")).unwrap();
    let ids_first: BTreeSet<String> = db
        .prepare("SELECT message_id FROM journal WHERE state = 'in_doubt'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(db);
    assert_eq!(ids_first.len(), 4);
    let s = nl.status(false);
    assert_eq!(n(&s, "in_doubt"), 4);
    assert_eq!(n(&s, "sent"), 0);

    let sink = Server::smtp_sink_on(port, &[]);
    let held = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&held), Some(3));
    assert!(stdout(&held).contains("--resend-in-doubt"));
    assert!(stdout(&held).contains("reader0000@example.org"));
    assert!(
        sink.messages().is_empty(),
        "in-doubt recipients are not resent unasked"
    );

    let resend = nl.run(&["send", "--edition", "e1", "--resend-in-doubt"]);
    assert_eq!(code(&resend), Some(0));
    let messages = sink.messages();
    assert_eq!(messages.len(), 4);
    let ids_again: BTreeSet<String> = messages
        .iter()
        .map(|(_, m)| header(m, "Message-ID").unwrap())
        .collect();
    assert_eq!(ids_again.len(), 4);
    assert_eq!(ids_first, ids_again, "same Message-IDs on resend");
    assert_eq!(n(&nl.status(false), "sent"), 4);
}

#[test]
fn relay_down_is_a_session_failure_and_marks_nobody() {
    let nl = Newsletter::generated(5, Some(free_port()));
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    let s = nl.status(false);
    assert_eq!(n(&s, "pending"), 5);
    for k in ["sent", "deferred", "bounced", "in_doubt", "expired"] {
        assert_eq!(n(&s, k), 0, "{k}");
    }
}

#[test]
// The wall clock only seeds the kill times (printed, to replay a failure).
#[allow(clippy::disallowed_methods)]
fn kill_during_a_send_then_resume_loses_nobody() {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(300, Some(sink.port), "concurrency = 4");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("random seed {seed}");
    let mut ever_in_doubt = BTreeSet::new();
    for round in 0..4 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = 30 + (seed >> 33) % 250;
        let mut child = nl
            .command(&["send", "--edition", "e1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        ever_in_doubt.extend(nl.recipients("in_doubt"));
        eprintln!(
            "round {round}: killed after {delay} ms, {} messages so far",
            sink.messages().len()
        );
    }
    let out = nl.run(&["send", "--edition", "e1"]);
    assert!(matches!(code(&out), Some(0) | Some(3)));
    ever_in_doubt.extend(nl.recipients("in_doubt"));
    let out = nl.run(&["send", "--edition", "e1", "--resend-in-doubt"]);
    assert_eq!(code(&out), Some(0));
    let counts = sink.counts();
    for r in &nl.readers {
        let c = counts.get(r).copied().unwrap_or(0);
        assert!(c >= 1, "{r} was lost");
        if c > 1 {
            assert!(
                ever_in_doubt.contains(r),
                "{r} got {c} copies but was never in doubt"
            );
        }
    }
    assert_eq!(counts.len(), 300);
    assert_eq!(n(&nl.status(false), "sent"), 300);
}

#[test]
fn a_second_concurrent_send_exits_75_without_connecting() {
    // Each DATA answer takes a second, so the first send is still running.
    let sink = Server::smtp_sink(&["-w", "1"]);
    let nl = Newsletter::generated_with(3, Some(sink.port), "concurrency = 1");
    let mut first = nl
        .command(&["send", "--edition", "e1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while nl.status(false)["state"] != "sending" {
        assert!(
            std::time::Instant::now() < deadline,
            "the first send never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&second), Some(75));
    assert!(String::from_utf8_lossy(&second.stderr).contains("is running"));
    assert_eq!(first.wait().unwrap().code(), Some(0));
    let counts = sink.counts();
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&c| c == 1));
}

#[test]
fn test_sends_go_to_editors_or_to_addresses_and_stay_apart() {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated(5, Some(sink.port));
    let out = nl.run(&["send", "--edition", "e1", "--test"]);
    assert_eq!(code(&out), Some(0));
    let counts = sink.counts();
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        vec!["edith@example.org", "ezra@example.org"]
    );
    for (_, m) in sink.messages() {
        assert_eq!(
            header(&m, "Subject").unwrap(),
            "[TEST] Night trains are back"
        );
    }
    // A test send never counts as the real one, and can be repeated.
    assert_eq!(nl.status(false)["state"], "unscheduled");
    assert_eq!(
        code(&nl.run(&["send", "--edition", "e1", "--test"])),
        Some(0)
    );
    assert_eq!(sink.messages().len(), 4);

    let to = nl.run(&[
        "send",
        "--edition",
        "e1",
        "--test",
        "--to",
        "someone@example.net",
    ]);
    assert_eq!(code(&to), Some(0));
    assert_eq!(sink.counts().get("someone@example.net"), Some(&1));
    assert_eq!(sink.messages().len(), 5);

    // The real send is unaffected and still goes to everyone.
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    assert_eq!(sink.messages().len(), 10);
    let real_ids: BTreeSet<String> = sink
        .messages()
        .iter()
        .filter(|(r, _)| r.starts_with("reader"))
        .map(|(_, m)| header(m, "Message-ID").unwrap())
        .collect();
    assert_eq!(real_ids.len(), 5);

    // An empty editors list is an error, never a fall-back to the readers.
    std::fs::write(nl.root().join("subscribers/editors.csv"), "email,name\n").unwrap();
    let empty = nl.run(&["send", "--edition", "e1", "--test"]);
    assert_eq!(code(&empty), Some(1));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no recipients"));
    assert_eq!(sink.messages().len(), 10);
}

#[test]
fn outbox_transport_writes_one_file_per_reader_and_resumes() {
    let nl = Newsletter::generated(25, None);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let dir = nl.root().join("outbox/e1");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 25);
    let mut to = BTreeSet::new();
    for f in &files {
        let msg = std::fs::read_to_string(f).unwrap();
        assert_contract_headers(&msg);
        to.insert(header(&msg, "To").unwrap());
    }
    assert_eq!(to.len(), 25);
    let again = nl.run(&["send", "--edition", "e1"]);
    assert!(stdout(&again).contains("complete, nothing to send"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 25);

    // Test sends go to their own folder.
    assert_eq!(
        code(&nl.run(&["send", "--edition", "e1", "--test"])),
        Some(0)
    );
    assert_eq!(
        std::fs::read_dir(nl.root().join("outbox/test-sends/e1"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn dry_run_renders_everything_and_records_nothing() {
    let nl = Newsletter::generated(15, None);
    let out = nl.run(&["send", "--edition", "e1", "--dry-run", "--json"]);
    assert_eq!(code(&out), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n(&report, "attempted"), 15);
    assert_eq!(n(&report, "sent"), 15);
    assert_eq!(n(&report["edition_totals"], "invalid"), 1);
    assert!(!nl.root().join("state").exists(), "no state store created");
    assert!(!nl.root().join("outbox").exists(), "nothing written");
}

#[test]
fn a_suppressed_address_is_skipped() {
    let nl = Newsletter::generated(6, None);
    let out = nl.run(&["unsubscribe", "reader0002@example.org"]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    let s = nl.status(false);
    assert_eq!((n(&s, "sent"), n(&s, "suppressed")), (5, 1));
    assert_eq!(nl.recipients("suppressed"), vec!["reader0002@example.org"]);
}

#[test]
fn a_421_and_hang_up_mid_run_reconnects_and_loses_nobody() {
    let server = Server::aiosmtpd(json!({"close_after": 5}));
    let nl = Newsletter::generated_with(12, Some(server.port), "concurrency = 1");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let counts = server.counts();
    assert_eq!(counts.len(), 12);
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    assert_eq!(n(&nl.status(false), "sent"), 12);
}

#[test]
fn auth_uses_the_password_from_the_environment_and_a_refusal_marks_nobody() {
    let server = Server::aiosmtpd(json!({"auth": {"sender": "s3cret"}}));
    let nl = Newsletter::generated(3, Some(server.port));
    let config = nl.root().join("brief.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("hello_name = \"brief.test\"\n", "hello_name = \"brief.test\"\nusername = \"sender\"\npassword_env = \"TEST_SMTP_PASSWORD\"\nallow_plaintext_auth = true\n"),
    )
    .unwrap();

    let refused = nl
        .command(&["send", "--edition", "e1"])
        .env("TEST_SMTP_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(code(&refused), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("authentication failed"));
    let s = nl.status(false);
    assert_eq!(
        (n(&s, "pending"), n(&s, "sent"), n(&s, "in_doubt")),
        (3, 0, 0)
    );
    assert!(server.messages().is_empty());

    let ok = nl
        .command(&["send", "--edition", "e1"])
        .env("TEST_SMTP_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert_eq!(
        code(&ok),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(server.counts().len(), 3);
}
