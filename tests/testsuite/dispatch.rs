//! `brief dispatch`, the editors' reports and `brief status` per edition, end to end: the
//! real binary with the clock set (`BRIEF_NOW`) against real SMTP servers.

use crate::harness::*;
use serde_json::json;
use std::fs::File;

const EDITORS: [&str; 2] = ["edith@example.org", "ezra@example.org"];

/// Adds `editions/<slug>.md` with this title, `send_at` (if any) and extra front matter.
fn edition(nl: &Newsletter, slug: &str, title: &str, send_at: Option<&str>, extra: &str) {
    let send_at = send_at.map_or_else(String::new, |t| format!("send_at = {t}\n"));
    std::fs::write(
        nl.root().join(format!("editions/{slug}.md")),
        format!("+++\ntitle = \"{title}\"\ndate = 2026-11-20\n{send_at}{extra}+++\n\nThe essay of {slug}.\n"),
    )
    .unwrap();
}

/// Messages received, split into (to readers, to editors), as (recipient, subject).
fn received(server: &Server) -> Received {
    server
        .messages()
        .into_iter()
        .map(|(rcpt, msg)| (rcpt, header(&msg, "Subject").unwrap_or_default()))
        .partition(|(rcpt, _)| !EDITORS.contains(&rcpt.as_str()))
}

/// Takes `state/locks/<name>` as another brief process would; held until dropped.
fn hold_lock(nl: &Newsletter, name: &str) -> File {
    let locks = nl.root().join("state/locks");
    std::fs::create_dir_all(&locks).unwrap();
    let held = File::create(locks.join(name)).unwrap();
    held.lock().unwrap();
    held
}

/// A newsletter with the editors' reports on (the harness turns them off by default).
fn reporting(readers: usize, smtp_port: Option<u16>) -> Newsletter {
    Newsletter::generated_with(readers, smtp_port, "report = true")
}

/// Messages received: (to readers, to editors).
type Received = (Vec<(String, String)>, Vec<(String, String)>);

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The warning brief prints (once) because the harness sets `BRIEF_NOW`.
fn clock_warning(now: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(now)
        .unwrap()
        .to_rfc3339();
    format!(" WARN BRIEF_NOW overrides the clock: it is {t} (meant for tests)\n")
}

/// Nothing printed but the clock warning for `now`, which must come exactly once.
fn assert_silent_at(o: &std::process::Output, now: &str) {
    let rest = stderr(o).replacen(&clock_warning(now), "", 1);
    assert!(
        o.stdout.is_empty() && rest.is_empty(),
        "expected no output but the clock warning, got stdout {:?} stderr {:?}",
        stdout(o),
        stderr(o)
    );
}

fn assert_silent(o: &std::process::Output) {
    assert_silent_at(o, NOW);
}

fn status_of(nl: &Newsletter, slug: &str, now: &str) -> serde_json::Value {
    let out = nl.run_at(now, &["status", "--edition", slug, "--json"]);
    assert_eq!(code(&out), Some(0));
    serde_json::from_slice(&out.stdout).expect("status json")
}

#[test]
fn a_due_edition_is_sent_once_and_future_and_unscheduled_ones_are_untouched() {
    let sink = Server::smtp_sink(&[]);
    let nl = reporting(5, Some(sink.port));
    // e1 (from the harness) has no send_at.
    edition(
        &nl,
        "due",
        "Due this morning",
        Some("2026-11-20T08:00:00Z"),
        "",
    );
    edition(
        &nl,
        "future",
        "Due tomorrow",
        Some("2026-11-21T08:00:00+01:00"),
        "",
    );

    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let (readers, editors) = received(&sink);
    assert_eq!(readers.len(), 5);
    assert!(
        readers.iter().all(|(_, s)| s == "Due this morning"),
        "{readers:?}"
    );
    let mut got: Vec<&str> = readers.iter().map(|(r, _)| r.as_str()).collect();
    got.sort();
    assert_eq!(
        got,
        nl.readers.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // The editors' report: one to each editor, with the counts.
    assert_eq!(editors.len(), 2, "{editors:?}");
    let report = sink
        .messages()
        .into_iter()
        .find(|(r, _)| r == "edith@example.org")
        .unwrap()
        .1;
    let subject = header(&report, "Subject").unwrap();
    assert!(
        subject.contains("due: complete, 5 sent, 0 bounced"),
        "{subject}"
    );
    assert!(report.contains("invalid rows: 1"), "{report}");
    let from = header(&report, "From").unwrap();
    assert!(
        from.contains("The Test Brief") && from.ends_with("<brief@news.example.org>"),
        "{from}"
    );

    assert_eq!(status_of(&nl, "due", NOW)["state"], "complete");
    assert_eq!(n(&status_of(&nl, "due", NOW), "sent"), 5);
    let future = status_of(&nl, "future", NOW);
    assert_eq!(future["state"], "scheduled");
    assert_eq!(future["send_at"], "2026-11-21T08:00:00+01:00");
    assert_eq!(n(&future, "sent"), 0);
    assert_eq!(status_of(&nl, "e1", NOW)["state"], "unscheduled");

    // The overview lists every edition with its send_at and state.
    let table = stdout(&nl.run(&["status"]));
    for (slug, state) in [
        ("due", "complete"),
        ("future", "scheduled"),
        ("e1", "unscheduled"),
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(slug) && l.contains(state)),
            "{slug} {state} in\n{table}"
        );
    }

    // Again: nothing more is sent, nothing is printed, no new report.
    let again = nl.run(&["dispatch"]);
    assert_eq!(code(&again), Some(0));
    assert_silent(&again);
    assert_eq!(sink.messages().len(), 7);
}

#[test]
fn an_idle_dispatch_prints_nothing() {
    let sink = Server::smtp_sink(&[]);
    let nl = reporting(3, Some(sink.port));
    edition(&nl, "future", "Later", Some("2026-11-20T09:00:01Z"), "");
    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(0));
    assert_silent(&out);
    assert!(sink.messages().is_empty());
    assert!(
        !nl.root().join("state/brief.db").exists(),
        "no store for nothing"
    );

    // A second later it is due.
    let out = nl.run_at("2026-11-20T09:00:01Z", &["dispatch"]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(received(&sink).0.len(), 3);
}

#[test]
fn a_late_edition_is_refused_reported_once_then_sent_with_allow_late() {
    let sink = Server::smtp_sink(&[]);
    let nl = reporting(4, Some(sink.port));
    // 25 hours late; max_lateness defaults to 6h.
    edition(
        &nl,
        "tuesday",
        "Tuesday's edition",
        Some("2026-11-19T08:00:00Z"),
        "",
    );

    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(err.contains("tuesday: not sent"), "{err}");
    assert!(err.contains("max_lateness (6h)"), "{err}");
    assert!(err.contains("--allow-late"), "{err}");
    let (readers, editors) = received(&sink);
    assert!(readers.is_empty(), "{readers:?}");
    assert_eq!(editors.len(), 2);
    assert!(
        editors
            .iter()
            .all(|(_, s)| s.contains("tuesday: not sent, too late")),
        "{editors:?}"
    );
    assert_eq!(status_of(&nl, "tuesday", NOW)["state"], "late");

    // Still refused five minutes later, but the editors are not told again.
    let out = nl.run_at("2026-11-20T09:05:00Z", &["dispatch"]);
    assert_eq!(code(&out), Some(1));
    assert_eq!(sink.messages().len(), 2);

    let out = nl.run_at("2026-11-20T09:10:00Z", &["dispatch", "--allow-late"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let (readers, editors) = received(&sink);
    assert_eq!(readers.len(), 4);
    assert!(readers.iter().all(|(_, s)| s == "Tuesday's edition"));
    assert_eq!(editors.len(), 4, "the refusal, then the completion report");
}

#[test]
fn a_dispatch_while_another_holds_the_lock_exits_75_quietly_without_connecting() {
    let sink = Server::smtp_sink(&[]);
    let nl = reporting(3, Some(sink.port));
    edition(&nl, "due", "Due", Some("2026-11-20T08:00:00Z"), "");
    let held = hold_lock(&nl, ".dispatch.lock");

    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(75));
    assert_silent(&out);
    assert!(sink.messages().is_empty(), "no connection, nothing sent");

    drop(held);
    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(received(&sink).0.len(), 3);
}

#[test]
fn deferred_recipients_are_retried_only_when_due() {
    let server = Server::aiosmtpd(json!({"defer_once": ["reader0003@example.org"]}));
    let nl = reporting(5, Some(server.port));
    edition(&nl, "due", "Due", Some("2026-11-20T08:30:00Z"), "");

    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(3), "deferred left: {}", stderr(&out));
    let (readers, editors) = received(&server);
    assert_eq!(readers.len(), 4);
    assert!(!readers.iter().any(|(r, _)| r == "reader0003@example.org"));
    assert_eq!(editors.len(), 2);
    let report = server
        .messages()
        .into_iter()
        .find(|(r, _)| r == "ezra@example.org")
        .unwrap()
        .1;
    assert!(header(&report, "Subject")
        .unwrap()
        .contains("due: incomplete, 4 sent"));
    assert!(
        report.contains("Next retry of deferred recipients: 2026-11-20T09:05:00Z"),
        "{report}"
    );
    assert_eq!(status_of(&nl, "due", NOW)["state"], "incomplete");

    // Not due yet: nothing sent, nothing printed, no report; still incomplete (3).
    let early = nl.run_at("2026-11-20T09:04:00Z", &["dispatch"]);
    assert_eq!(code(&early), Some(3));
    assert_silent_at(&early, "2026-11-20T09:04:00Z");
    assert_eq!(server.messages().len(), 6);

    let later = nl.run_at("2026-11-20T09:06:00Z", &["dispatch"]);
    assert_eq!(code(&later), Some(0), "{}", stderr(&later));
    let (readers, editors) = received(&server);
    assert_eq!(readers.len(), 5);
    assert_eq!(
        readers
            .iter()
            .filter(|(r, _)| r == "reader0003@example.org")
            .count(),
        1
    );
    assert_eq!(editors.len(), 4, "a second report: complete");
    assert!(
        editors
            .iter()
            .any(|(_, s)| s.contains("due: complete, 5 sent")),
        "{editors:?}"
    );
    assert_eq!(nl.recipients_of("due", "sent").len(), 5);
}

#[test]
fn a_broken_edition_is_not_sent_and_the_editors_hear_once() {
    let sink = Server::smtp_sink(&[]);
    let nl = reporting(3, Some(sink.port));
    edition(
        &nl,
        "broken",
        "Broken",
        Some("2026-11-20T08:00:00Z"),
        "audience = [\"readrs\"]\n",
    );
    edition(&nl, "fine", "Fine", Some("2026-11-20T08:30:00Z"), "");
    // Does not even parse, but its send_at can be read: reported, not ignored.
    std::fs::write(
        nl.root().join("editions/unparsable.md"),
        "+++\ntitle = \ndate = 2026-11-20\nsend_at = 2026-11-20T08:10:00Z\n+++\nx\n",
    )
    .unwrap();
    // Does not parse and has no send_at: a draft, left alone.
    std::fs::write(nl.root().join("editions/draft.md"), "+++\ntitle = \n+++\n").unwrap();

    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(err.contains("unparsable: not sent"), "{err}");
    assert!(!err.contains("draft"), "{err}");
    assert!(
        err.contains("editions/broken.md:5:"),
        "file:line:column: {err}"
    );
    assert!(
        err.contains("broken: not sent: it fails its checks"),
        "{err}"
    );
    let (readers, editors) = received(&sink);
    // The broken one is not sent; the next one still goes out.
    assert_eq!(readers.len(), 3);
    assert!(readers.iter().all(|(_, s)| s == "Fine"));
    let refusals: Vec<_> = editors
        .iter()
        .filter(|(_, s)| s.contains("broken: not sent"))
        .collect();
    assert_eq!(refusals.len(), 2, "{editors:?}");
    assert_eq!(
        editors
            .iter()
            .filter(|(_, s)| s.contains("unparsable: not sent"))
            .count(),
        2
    );
    let body = sink
        .messages()
        .into_iter()
        .find(|(r, m)| {
            r == "edith@example.org"
                && header(m, "Subject").is_some_and(|s| s.contains("broken: not sent"))
        })
        .unwrap()
        .1;
    assert!(body.contains("no list `readrs`"), "{body}");
    assert_eq!(n(&status_of(&nl, "broken", NOW), "sent"), 0);

    let before = sink.messages().len();
    let again = nl.run_at("2026-11-20T09:05:00Z", &["dispatch"]);
    assert_eq!(code(&again), Some(1));
    assert_eq!(
        sink.messages().len(),
        before,
        "reported once, not every run"
    );
}

#[test]
fn report_false_sends_no_report() {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(3, Some(sink.port), "report = false");
    edition(&nl, "due", "Due", Some("2026-11-20T08:00:00Z"), "");
    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(0));
    let (readers, editors) = received(&sink);
    assert_eq!(readers.len(), 3);
    assert!(editors.is_empty(), "{editors:?}");
}

#[test]
fn brief_send_reports_to_the_editors_through_the_outbox_too() {
    let nl = reporting(3, None);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let reports: Vec<_> = std::fs::read_dir(nl.root().join("outbox/reports"))
        .expect("reports folder")
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|m| header(m, "Subject")
        .unwrap()
        .contains("e1: complete, 3 sent")));
    let to: Vec<String> = reports.iter().map(|m| header(m, "To").unwrap()).collect();
    assert!(to.iter().any(|t| t.contains("edith@example.org")), "{to:?}");
    // A second send has nothing to do and reports nothing.
    nl.run(&["send", "--edition", "e1"]);
    assert_eq!(
        std::fs::read_dir(nl.root().join("outbox/reports"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn dispatch_wait_waits_for_the_running_one_then_sends() {
    let sink = Server::smtp_sink(&[]);
    let nl = reporting(3, Some(sink.port));
    edition(&nl, "due", "Due", Some("2026-11-20T08:00:00Z"), "");
    let held = hold_lock(&nl, ".dispatch.lock");

    let mut waiting = nl
        .command(&["dispatch", "--wait"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "--wait must not exit while the lock is held"
    );
    assert!(sink.messages().is_empty());
    drop(held);
    let status = waiting.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(received(&sink).0.len(), 3);
}

#[test]
fn dispatch_dry_run_renders_and_records_nothing() {
    let sink = Server::smtp_sink(&[]);
    let nl = reporting(3, Some(sink.port));
    edition(&nl, "due", "Due", Some("2026-11-20T08:00:00Z"), "");
    let out = nl.run(&["dispatch", "--dry-run"]);
    assert_eq!(code(&out), Some(0));
    assert!(stdout(&out).contains("due (dry run"), "{}", stdout(&out));
    assert!(stdout(&out).contains(": 3 rendered,"), "{}", stdout(&out));
    assert!(sink.messages().is_empty());
    assert!(!nl.root().join("state/brief.db").exists(), "no state store");
    assert_eq!(status_of(&nl, "due", NOW)["state"], "due");
    // The real run afterwards sends everything.
    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(received(&sink).0.len(), 3);
}

#[test]
fn in_doubt_addresses_are_reported_once_the_relay_takes_the_report() {
    let port = free_port();
    let nl = reporting(3, Some(port));
    edition(&nl, "due", "Due", Some("2026-11-20T08:00:00Z"), "");
    {
        // Hangs up after every final dot: the messages are in doubt, and the report
        // cannot go out either (logged, not fatal).
        let _sink = Server::smtp_sink_on(port, &["-q", "."]);
        let out = nl.run(&["dispatch"]);
        assert_eq!(code(&out), Some(3), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the report to the editors was not sent"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(nl.recipients_of("due", "in_doubt").len(), 3);

    let sink = Server::smtp_sink_on(port, &[]);
    let out = nl.run_at("2026-11-20T09:05:00Z", &["dispatch"]);
    assert_eq!(code(&out), Some(3), "in doubt is held for a human");
    let (readers, editors) = received(&sink);
    assert!(readers.is_empty(), "in-doubt recipients are not resent");
    assert_eq!(editors.len(), 2);
    // Undo quoted-printable soft line breaks (long relay replies).
    let report = &sink.messages()[0].1.replace("=\r\n", "");
    assert!(
        header(report, "Subject").unwrap().contains("3 in doubt"),
        "{report}"
    );
    assert!(
        report.contains("brief send --edition due --resend-in-doubt"),
        "{report}"
    );
    for r in &nl.readers {
        assert!(report.contains(r.as_str()), "{r} listed in\n{report}");
    }

    let again = nl.run_at("2026-11-20T09:10:00Z", &["dispatch"]);
    assert_eq!(code(&again), Some(3));
    assert_silent_at(&again, "2026-11-20T09:10:00Z");
    assert_eq!(sink.messages().len(), 2, "reported once");
}

#[test]
fn an_edition_a_manual_send_holds_is_left_to_it() {
    let sink = Server::smtp_sink(&[]);
    let nl = reporting(3, Some(sink.port));
    edition(&nl, "due", "Due", Some("2026-11-20T08:00:00Z"), "");
    let _held = hold_lock(&nl, "due.lock");

    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(75));
    assert!(stderr(&out).contains("is running"), "{}", stderr(&out));
    assert!(sink.messages().is_empty());
    assert_eq!(status_of(&nl, "due", NOW)["state"], "sending");
}

#[test]
fn a_frozen_clock_is_warned_about_once() {
    let nl = reporting(3, None);
    edition(&nl, "due", "Due", Some("2026-11-20T08:00:00Z"), "");
    // `status` reads the clock for every edition; the warning still comes once.
    edition(&nl, "later", "Later", Some("2026-11-21T08:00:00Z"), "");
    let out = nl.run(&["status"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches(&clock_warning(NOW)).count(),
        1,
        "{}",
        stderr(&out)
    );
    // Without BRIEF_NOW the system clock is used, silently.
    let out = nl
        .command(&["status"])
        .env_remove("BRIEF_NOW")
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("BRIEF_NOW"), "{}", stderr(&out));
}
