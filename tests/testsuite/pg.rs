//! The PostgreSQL store, against a real private cluster (`harness::postgres`, one per
//! test binary; each test has its own database): every area behaves as on SQLite, the
//! schema is created once by processes starting together and a newer one is refused,
//! an unreachable database is a clear error.

use crate::harness::*;
use brief::store::{
    BounceEvent, Location, NewRecipient, ProviderEvent, ReportKind, State, Store, Suppression,
    SuppressionReason, SuppressionSource, Update, REAL, TEST,
};
use std::process::Stdio;

/// Points a newsletter's `[state]` at the PostgreSQL database `url`.
pub fn on_postgres(nl: &Newsletter, url: &str) {
    let mut config = nl.read("brief.toml");
    config.push_str(&format!("\n[state]\nurl = \"{url}\"\n"));
    nl.write("brief.toml", &config);
}

fn connect(url: &str) -> Store {
    Store::connect(&Location::Postgres {
        url: url.into(),
        password: None,
    })
    .expect("connect to the test cluster")
}

pub(crate) fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Everything a store answers for one scenario that touches every area, as text: run
/// on both engines, the two must be equal.
fn every_area(s: &Store) -> Vec<String> {
    let t = |m: i64| {
        chrono::DateTime::parse_from_rfc3339("2026-11-20T09:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
            + chrono::Duration::minutes(m)
    };
    let mut out = Vec::new();
    let people = ["A@x.org", "b@x.org", "a@X.org", "c@x.org", "d@x.org"].map(|a| NewRecipient {
        address: a.into(),
        name: format!("Name of {a}"),
        fields: r#"{"city":"Ghent"}"#.into(),
    });
    let info = s
        .freeze("e1", REAL, t(0), &mut people.clone().into_iter(), &mut || 2)
        .unwrap();
    out.push(format!(
        "frozen {} {} {}",
        info.frozen, info.duplicates, info.invalid
    ));
    s.freeze("e1", TEST, t(0), &mut people.into_iter().take(1), &mut || 0)
        .unwrap();
    let due = s.due("e1", REAL, 0, t(1), false, 10).unwrap();
    out.push(format!(
        "due {:?}",
        due.iter()
            .map(|e| (&e.address, &e.name, &e.fields, e.state, e.suppressed))
            .collect::<Vec<_>>()
    ));
    // a: sent; b: in doubt; c: deferred; d: suppressed before its claim.
    s.suppress(&Suppression {
        address: "D@x.org".into(),
        suppressed_at: t(1),
        source: SuppressionSource::OneClick,
        edition: Some("e1".into()),
    })
    .unwrap();
    let mut marks: Vec<Update> = due
        .iter()
        .map(|e| {
            let mut u = Update::new(e.id, State::InDoubt, t(2));
            u.unless_suppressed = true;
            u.message_id = Some(format!(
                "<tok{}@news.example.org>",
                e.address.to_lowercase().replace(['@', '.'], "")
            ));
            u
        })
        .collect();
    let refused = s.apply(&marks).unwrap();
    out.push(format!("refused {}", refused.len()));
    let mut sent = Update::new(due[0].id, State::Sent, t(3));
    sent.reply = Some("250 ok".into());
    sent.attempt = true;
    let mut deferred = Update::new(due[2].id, State::Deferred, t(3));
    deferred.attempt = true;
    deferred.reply = Some("451 later".into());
    deferred.next_attempt_at = Some(t(60));
    marks.clear();
    s.apply(&[sent, deferred]).unwrap();
    out.push(format!("counts {:?}", s.counts("e1", REAL).unwrap()));
    out.push(format!("test counts {:?}", s.counts("e1", TEST).unwrap()));
    out.push(format!(
        "due later {}",
        s.due("e1", REAL, 0, t(61), false, 10).unwrap().len()
    ));
    out.push(format!(
        "moved {}",
        s.clamp_retries("e1", REAL, t(3), t(30)).unwrap()
    ));
    out.push(format!(
        "in doubt {:?}",
        s.recipients("e1", REAL, State::InDoubt).unwrap()
    ));
    out.push(format!(
        "deferred {:?}",
        s.recipients("e1", REAL, State::Deferred).unwrap()
    ));
    s.finish("e1", REAL, t(5)).unwrap();
    out.push(format!(
        "sends {:?}",
        s.sends()
            .unwrap()
            .iter()
            .map(|i| (&i.edition, &i.namespace, i.started_at, i.finished_at))
            .collect::<Vec<_>>()
    ));
    // Suppressions.
    out.push(format!(
        "suppressed {}",
        s.is_suppressed("d@X.ORG").unwrap()
    ));
    out.push(format!("suppressions {:?}", s.suppressions().unwrap()));
    out.push(format!("one {:?}", s.suppression("d@x.org").unwrap()));
    // Bounces and what attributes them.
    for (key, address, kind) in [
        ("m1", "a@x.org", "hard"),
        ("m2", "c@x.org", "soft"),
        ("m1", "a@x.org", "hard"),
    ] {
        out.push(format!(
            "bounce {}",
            s.record_bounce(&BounceEvent {
                key,
                address,
                edition: "e1",
                kind,
                status: Some("5.1.1"),
                diagnostic: None,
                at: t(10),
            })
            .unwrap()
        ));
    }
    s.record_suppression_reason(
        "d@x.org",
        &SuppressionReason {
            kind: "complaint".into(),
            edition: "e1".into(),
            status: None,
            diagnostic: Some("abuse".into()),
        },
    )
    .unwrap();
    out.push(format!(
        "editions {:?}",
        s.bounce_editions("a@x.org", "hard").unwrap()
    ));
    out.push(format!("sends to {:?}", s.sends_to("A@x.org").unwrap()));
    out.push(format!(
        "was sent {} {}",
        s.was_sent("e1", "a@x.org").unwrap(),
        s.was_sent("e1", "z@x.org").unwrap()
    ));
    out.push(format!(
        "by id {:?}",
        s.send_by_message_id("tokaxorg@news.example.org").unwrap()
    ));
    out.push(format!(
        "by verp {:?}",
        s.send_by_verp_token("tokbxorg").unwrap()
    ));
    out.push(format!("reasons {:?}", s.suppression_reasons().unwrap()));
    out.push(format!(
        "bounce counts {:?}",
        s.bounce_counts("e1").unwrap()
    ));
    out.push(format!(
        "accepted {:?}",
        s.accepted_recipients("e1", REAL).unwrap().len()
    ));
    // Provider events and nonces.
    let event = ProviderEvent {
        provider: "postmark".into(),
        event_id: "ev1".into(),
        kind: "hard".into(),
        recipient: Some("B@x.org".into()),
        status: Some("5.1.1".into()),
        diagnostic: None,
        message_id: Some("<tokbxorg@news.example.org>".into()),
        occurred_at: Some(t(11)),
        received_at: t(12),
        edition: Some("e1".into()),
        outcome: "counted".into(),
    };
    out.push(format!(
        "event {} {}",
        s.record_event(&event).unwrap(),
        s.record_event(&event).unwrap()
    ));
    out.push(format!("has {}", s.has_event("postmark", "ev1").unwrap()));
    out.push(format!("events {:?}", s.provider_events().unwrap()));
    out.push(format!(
        "nonce {} {}",
        s.take_nonce("sns", "n1", t(1), t(0)).unwrap(),
        s.take_nonce("sns", "n1", t(2), t(0)).unwrap()
    ));
    out.push(format!(
        "by message {:?}",
        s.edition_by_message_id("<tokbxorg@news.example.org>", "b@x.org")
            .unwrap()
    ));
    out.push(format!(
        "recent {:?}",
        s.recent_edition_for("b@x.org", t(0)).unwrap()
    ));
    // Reports: remembered once per state.
    out.push(format!(
        "report {} {} {:?}",
        s.remember_report("e1", ReportKind::Send, "complete", t(20))
            .unwrap(),
        s.remember_report("e1", ReportKind::Send, "complete", t(21))
            .unwrap(),
        s.reported("e1", ReportKind::Send).unwrap()
    ));
    s.forget_report("e1", ReportKind::Send).unwrap();
    out.push(format!(
        "forgotten {:?}",
        s.reported("e1", ReportKind::Send).unwrap()
    ));
    // Resubscribing forgets the bounces; a transaction is all or nothing.
    out.push(format!(
        "resubscribed {}",
        s.resubscribe("d@x.org").unwrap()
    ));
    let failed: anyhow::Result<()> = s.transaction(|s| {
        s.suppress(&Suppression {
            address: "e@x.org".into(),
            suppressed_at: t(30),
            source: SuppressionSource::Manual,
            edition: None,
        })?;
        anyhow::bail!("changed my mind")
    });
    out.push(format!(
        "rolled back {} {}",
        failed.is_err(),
        s.is_suppressed("e@x.org").unwrap()
    ));
    s.transaction(|s| {
        s.suppress(&Suppression {
            address: "e@x.org".into(),
            suppressed_at: t(30),
            source: SuppressionSource::Manual,
            edition: None,
        })
    })
    .unwrap();
    out.push(format!("committed {}", s.is_suppressed("e@x.org").unwrap()));
    s.reset("e1", TEST).unwrap();
    out.push(format!(
        "reset {:?}",
        s.send_info("e1", TEST).unwrap().is_none()
    ));
    out
}

#[test]
fn every_area_of_the_store_answers_on_postgresql_as_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = every_area(&Store::open(&dir.path().join("brief.db")).unwrap());
    let pg = every_area(&connect(&postgres().database()));
    for (a, b) in sqlite.iter().zip(&pg) {
        assert_eq!(a, b, "SQLite and PostgreSQL differ");
    }
    assert_eq!(sqlite.len(), pg.len());
}

#[test]
fn the_schema_is_created_once_by_processes_that_start_together_on_an_empty_database() {
    let url = postgres().database();
    let nl = Newsletter::generated(0, None);
    on_postgres(&nl, &url);
    let children: Vec<_> = (0..6)
        .map(|i| {
            nl.command(&["unsubscribe", &format!("reader{i}@example.org")])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    }
    assert_eq!(nl.suppressions().len(), 6);
    assert_eq!(
        postgres().sql(&url, "SELECT version FROM brief_schema"),
        "5",
        "one schema version row"
    );
}

#[test]
fn a_database_with_a_newer_schema_is_refused() {
    let url = postgres().database();
    let nl = Newsletter::generated(0, None);
    on_postgres(&nl, &url);
    assert_eq!(code(&nl.run(&["unsubscribe", "a@example.org"])), Some(0));
    postgres().sql(&url, "UPDATE brief_schema SET version = 99");
    for args in [&["unsubscribe", "b@example.org"][..], &["suppressions"][..]] {
        let out = nl.run(args);
        assert_eq!(code(&out), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("schema is version 99, newer than this brief knows (5)"),
            "{err}"
        );
    }
    assert_eq!(
        postgres().sql(&url, "SELECT count(*) FROM suppressions"),
        "1"
    );
}

#[test]
fn an_unreachable_database_at_start_is_a_clear_error() {
    let nl = Newsletter::generated(3, None);
    let port = free_port();
    on_postgres(&nl, &format!("postgres://brief@127.0.0.1:{port}/nowhere"));
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "cannot reach the database postgres://brief@127.0.0.1:{port}/nowhere"
        )),
        "{err}"
    );

    assert!(!nl.path("outbox").exists(), "nothing written");
}

pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `brief send --edition e1 --json`, started.
pub fn start_send(nl: &Newsletter) -> Killed {
    Killed(
        nl.command(&["send", "--edition", "e1", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start brief send"),
    )
}

/// The readers of `e1` in doubt, as `brief status --recipients in_doubt --json` lists
/// them.
pub fn in_doubt_addresses(nl: &Newsletter) -> Vec<String> {
    let out = nl.run(&[
        "status",
        "--edition",
        "e1",
        "--recipients",
        "in_doubt",
        "--json",
    ]);
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect()
}

/// Waits (bounded) for a started send: its exit code and its JSON report.
pub fn finish(mut send: Killed, limit: std::time::Duration) -> (Option<i32>, serde_json::Value) {
    let started = std::time::Instant::now();
    let mut timed_out = false;
    while send.0.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            timed_out = true;
            let _ = send.0.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let child = std::mem::replace(
        &mut send.0,
        std::process::Command::new("true").spawn().unwrap(),
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        !timed_out,
        "brief send did not finish within {limit:?}: {}",
        stderr(&out)
    );
    eprintln!("{}", stderr(&out));
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (code(&out), json)
}

pub fn wait_for_messages(sink: &Server, at_least: usize) {
    let started = std::time::Instant::now();
    while sink.messages().len() < at_least {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the send never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn two_senders_of_one_edition_deliver_every_reader_exactly_once_and_both_do_a_share() {
    // A second before every DATA reply: the relay, not brief, sets the pace, so both
    // senders have most of the audience still to go once they are running.
    let sink = Server::smtp_sink(&["-w", "1"]);
    let nl = Newsletter::generated_with(48, Some(sink.port), "concurrency = 4\nreport = true");
    on_postgres(&nl, &postgres().database());
    // Started together: one freezes the audience, the other waits for it, then joins.
    let first = start_send(&nl);
    let second = start_send(&nl);
    wait_for_messages(&sink, 1);
    assert_eq!(nl.status(false)["state"], "sending");
    let limit = std::time::Duration::from_secs(60);
    let (code_a, a) = finish(first, limit);
    let (code_b, b) = finish(second, limit);
    assert_eq!((code_a, code_b), (Some(0), Some(0)), "{a}\n{b}");
    let counts = sink.counts();
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    // The editors' report went out once, not once per sender.
    for editor in ["edith@example.org", "ezra@example.org"] {
        assert_eq!(counts.get(editor), Some(&1), "{editor}: {counts:?}");
    }
    assert_eq!(counts.len(), 48 + 2, "nobody else");
    // Each process prints its own counts at the top, the edition's under
    // `edition_totals`.
    let (own_a, own_b) = (&a, &b);
    assert!(
        n(own_a, "sent") > 0 && n(own_b, "sent") > 0,
        "both did a share: {own_a} {own_b}"
    );
    assert_eq!(n(own_a, "sent") + n(own_b, "sent"), 48);
    assert_eq!(n(own_a, "attempted") + n(own_b, "attempted"), 48);
    assert_ne!(own_a["pid"], own_b["pid"]);
    // Each report's totals are the edition's, not the process's; the duplicate row of
    // the list is counted once although two senders started the freeze.
    let (all_a, all_b) = (&a["edition_totals"], &b["edition_totals"]);
    assert_eq!((n(all_a, "sent"), n(all_b, "sent")), (48, 48));
    assert_eq!((n(all_a, "pending"), n(all_b, "pending")), (0, 0));
    assert_eq!((n(&a, "duplicates"), n(&b, "duplicates")), (1, 1));
    let s = nl.status(false);
    assert_eq!(
        (n(&s, "sent"), n(&s, "pending"), n(&s, "invalid")),
        (48, 0, 1)
    );
    assert_eq!(s["state"], "complete");
}

/// A sender that has sent all it holds while another, live sender still holds a reader
/// in doubt: it must have handed every one of its own readers to the relay while it
/// waits. (Its connections once waited for a queue lock that an idle connection held
/// until the queue got more, with a marked reader in hand: two senders each waiting for
/// the other's in-doubt reader hung until one was killed.)
#[test]
fn a_sender_waiting_for_another_sender_has_sent_every_reader_it_holds() {
    let sink = Server::smtp_sink(&["-w", "1"]);
    let closed = free_port();
    let nl = Newsletter::generated_with(7, Some(closed), "concurrency = 2");
    let db = postgres().database();
    on_postgres(&nl, &db);
    // Freeze the audience without touching anyone: the relay refuses the session.
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Another sender, alive (its heartbeat is fresh), holds the last reader in doubt.
    let other = postgres()
        .sql(
            &db,
            "INSERT INTO workers (edition, namespace, host, pid, started_at)
         VALUES ('e1', 'send', 'elsewhere', 1, '2026-12-01T00:00:00Z') RETURNING id",
        )
        .lines()
        .next()
        .unwrap()
        .to_string();
    let held = nl.readers.last().unwrap().clone();
    postgres().sql(
        &db,
        &format!(
            "UPDATE journal SET state = 'in_doubt', claimed_by = {other} WHERE address = '{held}'"
        ),
    );
    nl.write(
        "brief.toml",
        &nl.read("brief.toml").replace(
            &format!("port = {closed}"),
            &format!("port = {}", sink.port),
        ),
    );
    let send = start_send(&nl);
    let mine = || nl.readers.iter().filter(|r| **r != held);
    let started = std::time::Instant::now();
    let mut delivered = sink.counts();
    while !mine().all(|r| delivered.contains_key(r))
        && started.elapsed() < std::time::Duration::from_secs(20)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
        delivered = sink.counts();
    }
    // The other sender answers for its reader and leaves: this one finishes.
    postgres().sql(
        &db,
        &format!(
            "UPDATE journal SET state = 'sent', claimed_by = NULL WHERE address = '{held}';
             DELETE FROM workers WHERE id = {other}"
        ),
    );
    let (code, report) = finish(send, std::time::Duration::from_secs(60));
    for reader in mine() {
        assert_eq!(
            delivered.get(reader),
            Some(&1),
            "{reader} not sent while the other sender held {held}: {delivered:?}"
        );
    }
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(sink.counts().get(&held), None, "the other sender's reader");
}

#[test]
fn a_sender_killed_after_its_claim_leaves_its_readers_to_the_other_and_its_in_doubt_held() {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(
        300,
        Some(sink.port),
        "concurrency = 2\nrate_per_second = 50",
    );
    on_postgres(&nl, &postgres().database());
    // The first sender claims the whole audience (one batch), sends some, and dies.
    let mut first = start_send(&nl);
    wait_for_messages(&sink, 15);
    first.0.kill().unwrap(); // SIGKILL
    let _ = first.0.wait();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let by_first = sink.messages().len();
    // The second finds every recipient claimed by a sender whose lease still runs: it
    // waits, then takes them over.
    let (code_b, b) = finish(start_send(&nl), std::time::Duration::from_secs(120));
    let counts = sink.counts();
    let in_doubt = in_doubt_addresses(&nl);
    assert!(
        in_doubt.len() <= 4,
        "at most 2 in doubt per connection: {in_doubt:?}"
    );
    // Dead between the mark and the answer: in doubt, and nobody resent them.
    for reader in &in_doubt {
        assert!(
            counts.get(reader).copied().unwrap_or(0) <= 1,
            "{reader} resent"
        );
    }
    for reader in nl.readers.iter().filter(|r| !in_doubt.contains(r)) {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    let own = &b;
    assert_eq!(
        n(own, "sent") as usize,
        300 - in_doubt.len()
            - (by_first - in_doubt.iter().filter(|r| counts.contains_key(*r)).count())
    );

    assert_eq!(code_b, Some(if in_doubt.is_empty() { 0 } else { 3 }), "{b}");
    // Held: a later run sends none of them.
    let again = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(
        sink.messages().len(),
        counts.values().sum::<usize>(),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_send_waits_for_a_restarted_database_and_goes_on_losing_nothing() {
    let cluster = Postgres::start();
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(
        400,
        Some(sink.port),
        "concurrency = 2\nrate_per_second = 80",
    );
    on_postgres(&nl, &cluster.database());
    let send = start_send(&nl);
    wait_for_messages(&sink, 60);
    cluster.stop();
    std::thread::sleep(std::time::Duration::from_secs(3));
    cluster.run();
    let (code, report) = finish(send, std::time::Duration::from_secs(120));
    let counts = sink.counts();
    assert!(counts.values().all(|&c| c == 1), "nobody twice: {counts:?}");
    let s = nl.status(false);
    // Every message the relay took is recorded; nobody is forgotten.
    assert_eq!(n(&s, "sent") as usize, counts.len(), "{s}");
    assert_eq!(
        n(&s, "sent") + n(&s, "in_doubt") + n(&s, "pending"),
        400,
        "{s}"
    );
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(n(&s, "sent"), 400);
}

#[test]
fn an_unsubscribe_through_brief_serve_during_a_shared_send_is_honoured() {
    let sink = Server::smtp_sink(&["-w", "1"]);
    let nl = Newsletter::generated_with(8, Some(sink.port), "concurrency = 1");
    on_postgres(&nl, &postgres().database());
    let last = nl.readers.last().unwrap().clone();
    // The web host: another process, the same database.
    let serve = nl.serve();
    let send = start_send(&nl);
    wait_for_messages(&sink, 1);
    let token = nl.token(&last, "e1", false);
    let answer = serve.request(
        "POST",
        &format!("/brief/u/{token}"),
        &[("Content-Type", FORM)],
        b"List-Unsubscribe=One-Click",
    );
    assert_eq!(answer.status, 200);
    assert!(
        !sink.counts().contains_key(&last),
        "the sink is too fast for this test"
    );
    let (code, report) = finish(send, std::time::Duration::from_secs(60));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(sink.counts().get(&last), None);
    let all = &report["edition_totals"];
    assert_eq!((n(all, "sent"), n(all, "suppressed")), (7, 1));
    // This one sender did all of it.
    assert_eq!((n(&report, "sent"), n(&report, "suppressed")), (7, 1));
}

#[test]
fn store_copy_moves_every_table_to_postgresql_and_back() {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated(20, Some(sink.port));
    // History on SQLite: a send, a suppression, a remembered report.
    assert_eq!(
        code(&nl.run(&["unsubscribe", "reader0003@example.org"])),
        Some(0)
    );
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    let before = nl.status(false);
    let suppressed_before = nl.suppressions();
    let url = postgres().database();
    let out = nl.run(&["store", "copy", "--to", &url]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        printed.contains("journal: 20\n") && printed.contains("suppressions: 1\n"),
        "{printed}"
    );
    // The Message-IDs of the copied send find their rows (bounces, webhooks).
    assert_eq!(
        postgres().sql(
            &url,
            "SELECT count(*) FROM journal j JOIN journal_message_ids m
               ON m.journal_id = j.id AND m.message_id = j.message_id"
        ),
        postgres().sql(
            &url,
            "SELECT count(*) FROM journal WHERE message_id IS NOT NULL"
        ),
    );
    assert_eq!(
        postgres().sql(&url, "SELECT count(*) FROM journal_message_ids"),
        "19"
    );
    // A second copy into the same (now full) database is refused, and changes nothing.
    let again = nl.run(&["store", "copy", "--to", &url]);
    assert_eq!(code(&again), Some(1));
    assert!(
        stderr(&again).contains("is not empty (suppressions: 1, sends: 1, journal: 20"),
        "{}",
        stderr(&again)
    );
    // Switched over: the same answers from PostgreSQL, and a resend sends nothing.
    let sqlite_config = nl.read("brief.toml");
    on_postgres(&nl, &url);
    assert_eq!(nl.status(false), before);
    assert_eq!(nl.suppressions(), suppressed_before);
    let mailed = sink.messages().len();
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(0));
    assert_eq!(
        sink.messages().len(),
        mailed,
        "nobody mailed twice after the switch"
    );
    // And back, into a new SQLite file.
    let back = nl.path("state/back.db");
    let out = nl.run(&["store", "copy", "--to", back.to_str().unwrap()]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    nl.write(
        "brief.toml",
        &format!("{sqlite_config}\n[state]\npath = \"state/back.db\"\n"),
    );
    assert_eq!(nl.status(false), before);
    assert_eq!(nl.suppressions(), suppressed_before);
}
