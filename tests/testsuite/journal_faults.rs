//! Delivery under faults of the relay, the journal and the clock: a relay that hangs up
//! after every final dot, a `-wal` lost or garbled after kill -9, another process
//! holding the journal's write lock, a clock that ran ahead; and the messages these
//! faults print.

use crate::harness::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits for `child` up to `limit` (a hang is a failure, not a wait forever).
fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("brief did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    eprintln!("{out}{err}-> {:?}", status.code());
    std::process::Output {
        status,
        stdout: out.into_bytes(),
        stderr: err.into_bytes(),
    }
}

#[test]
fn a_relay_that_hangs_up_after_every_final_dot_stops_the_run_after_a_short_streak() {
    // smtp-sink -q .: disconnect right after the final dot, before answering it.
    let sink = Server::smtp_sink(&["-q", "."]);
    let nl = Newsletter::generated_with(300, Some(sink.port), "concurrency = 4");
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("dropped the connection after the message was handed over"),
        "{err}"
    );
    assert!(err.contains("--resend-in-doubt"), "{err}");
    assert_eq!(err.matches("refused the session").count(), 0, "{err}");
    let s = nl.status(false);
    let in_doubt = n(&s, "in_doubt");
    assert!(
        in_doubt <= 10,
        "{in_doubt} in doubt: at most max(10, 2 x 4)"
    );
    assert!(in_doubt >= 1);
    assert_eq!(n(&s, "pending"), 300 - in_doubt);
}

/// Kills a send to a relay without delay once `at_least` messages arrived.
fn kill_mid_send(nl: &Newsletter, sink: &Server, at_least: usize) {
    let mut child = nl
        .command(&["send", "--edition", "e1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(sink.dir()).unwrap().count() < at_least {
        assert!(Instant::now() < deadline, "the send never got going");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    // Let the sink finish writing what it received.
    std::thread::sleep(Duration::from_millis(300));
}

fn a_journal_that_lost_its_wal_is_refused(damage: fn(&std::path::Path)) {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(3000, Some(sink.port), "concurrency = 4");
    // Killed well before SQLite's first checkpoint (1,000 WAL pages; a commit writes
    // about ten): every committed step is still only in the WAL, so the damage loses
    // some. Killed at 200 messages, the damaged-inside case went on sending in 1 run
    // of 10 (exit 3, not refused): the kill can land right after a checkpoint copied
    // everything into the database and before the WAL starts over, and a damaged
    // frame then loses nothing. Killed at 50: 45 runs of the three cases, all refused.
    kill_mid_send(&nl, &sink, 50);
    let before = sink.messages().len();
    let wal = nl.path("state/brief.db-wal");
    assert!(wal.exists(), "the journal still has a -wal after kill -9");
    damage(&wal);
    let _ = std::fs::remove_file(nl.path("state/brief.db-shm"));

    let out = nl.run(&["send", "--edition", "e1"]);
    let err = stderr(&out);
    assert_eq!(code(&out), Some(1), "{err}");
    assert!(err.contains("went back in time"), "{err}");
    assert!(err.contains("brief.db.mark"), "{err}");
    assert_eq!(sink.messages().len(), before, "nothing sent");
    assert!(sink.counts().values().all(|&c| c == 1), "nobody doubled");
}

#[test]
fn a_journal_whose_wal_was_deleted_after_kill_9_is_refused_and_nobody_is_sent_twice() {
    a_journal_that_lost_its_wal_is_refused(|wal| std::fs::remove_file(wal).unwrap());
}

#[test]
fn a_journal_whose_wal_header_was_garbled_after_kill_9_is_refused() {
    a_journal_that_lost_its_wal_is_refused(|wal| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(wal).unwrap();
        f.write_all_at(&[0xA5; 32], 0).unwrap();
    });
}

#[test]
fn a_journal_whose_wal_was_damaged_inside_after_kill_9_is_refused() {
    // SQLite drops every frame from the first bad checksum on: committed steps lost.
    a_journal_that_lost_its_wal_is_refused(|wal| {
        use std::os::unix::fs::FileExt;
        // Inside the first frame (after the 32-byte header and the frame's own 24):
        // wherever the live frames start after a checkpoint, this drops them all.
        let f = std::fs::OpenOptions::new().write(true).open(wal).unwrap();
        f.write_all_at(&[0x5A; 1024], 32 + 24 + 512).unwrap();
    });
}

#[test]
fn kill_9_with_the_wal_intact_resumes_without_refusal_or_loss() {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(1500, Some(sink.port), "concurrency = 4");
    kill_mid_send(&nl, &sink, 100);
    let ever_in_doubt: std::collections::BTreeSet<String> =
        nl.recipients("in_doubt").into_iter().collect();
    let out = nl.run(&["send", "--edition", "e1"]);
    assert!(matches!(code(&out), Some(0) | Some(3)), "{}", stderr(&out));
    let out = nl.run(&["send", "--edition", "e1", "--resend-in-doubt"]);
    assert_eq!(code(&out), Some(0));
    let counts = sink.counts();
    assert_eq!(counts.len(), 1500);
    for (r, c) in counts {
        assert!(c == 1 || ever_in_doubt.contains(&r), "{r} got {c} copies");
    }
}

/// A second process holding the state database's write lock for `secs` seconds.
fn hold_write_lock(db: &std::path::Path, secs: u64) -> Child {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             print('LOCKED', flush=True)\n\
             time.sleep(float(sys.argv[2]))\n\
             c.execute('ROLLBACK')\n",
        )
        .arg(db)
        .arg(secs.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "LOCKED");
    child
}

#[test]
fn a_journal_write_lock_held_by_another_process_stops_the_send_and_a_later_run_resumes() {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(40, Some(free_port()), "concurrency = 2");
    // Freeze the audience (the relay is down: nobody is marked).
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(1));
    nl.set_smtp(&[("port", &sink.port.to_string())]);
    let mut holder = hold_write_lock(&nl.path("state/brief.db"), 35);
    let mut send = nl
        .command(&["send", "--edition", "e1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(&mut send, Duration::from_secs(120));
    assert!(matches!(code(&out), Some(1) | Some(3)));
    let err = stderr(&out);
    assert!(err.contains("state/brief.db"), "names the database: {err}");
    assert!(sink.messages().is_empty(), "no body went out unrecorded");
    let _ = holder.wait();

    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let counts = sink.counts();
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|&c| c == 1));
}

#[test]
fn retry_times_left_by_a_clock_that_ran_ahead_are_clamped() {
    let server = Server::aiosmtpd(json!({"defer_once": ["reader0003@example.org"]}));
    let nl = Newsletter::generated_with(5, Some(server.port), "retry_max = \"1h\"");
    let ahead = "2027-11-20T09:00:00Z";
    let out = nl.run_at(ahead, &["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(3));
    // The clock is corrected: the next run brings the retry within retry_max.
    let out = nl.run_at("2026-11-20T10:00:00Z", &["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(3));
    let s = nl.status(false);
    assert_eq!(s["next_retry"], "2026-11-20T11:00:00Z");
    let out = nl.run_at("2026-11-20T11:01:00Z", &["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(server.counts().get("reader0003@example.org"), Some(&1));
}

#[test]
fn an_unparsable_brief_now_is_an_error() {
    let nl = Newsletter::generated(2, None);
    let out = nl.run_at("next tuesday", &["status", "--edition", "e1"]);
    assert_eq!(code(&out), Some(2));
    assert!(stderr(&out).contains("BRIEF_NOW"), "{}", stderr(&out));
}

#[test]
fn a_greeting_refusal_is_reported_once_and_a_silent_relay_is_not_called_refusing() {
    // A relay that refuses the session at its greeting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            use std::io::Write;
            let mut s = s;
            let _ = s.write_all(b"554 5.3.2 not accepting mail\r\n");
        }
    });
    let nl = Newsletter::generated(3, Some(port));
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert_eq!(err.matches("refused the session").count(), 1, "{err}");

    // A relay that accepts the connection and says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for s in silent.incoming().flatten() {
            keep.lock().unwrap().push(s);
        }
    });
    nl.set_smtp(&[("port", &port.to_string())]);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(!err.contains("refused"), "{err}");
    assert!(err.contains("the send stopped"), "{err}");
}

#[test]
fn a_report_to_editors_lost_after_the_body_is_described_in_words() {
    let sink = Server::smtp_sink(&["-q", "."]);
    let nl = Newsletter::generated_with(2, Some(sink.port), "report = true");
    let out = nl.run(&["send", "--edition", "e1"]);
    let err = stderr(&out);
    assert!(!err.contains("LostAfterBody"), "{err}");
    assert!(
        err.contains("the report to the editors was not sent"),
        "{err}"
    );
    assert!(
        err.contains("no answer after the report was handed over"),
        "{err}"
    );
}

#[test]
fn a_bad_row_says_skipped_once() {
    let nl = Newsletter::generated(3, None);
    let list = nl.read("subscribers/readers.csv");
    nl.write(
        "subscribers/readers.csv",
        &list.replace("not-an-address,Bad Row", "bad@example.org,Bad\u{7}Row"),
    );
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0));
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.contains("readers.csv:4"))
        .unwrap_or_else(|| panic!("the bad row is reported: {err}"));
    assert_eq!(line.matches("skipped").count(), 1, "{line}");
}

#[test]
fn a_freeze_resumed_after_an_interruption_counts_duplicates_once() {
    let nl = Newsletter::generated(20, Some(free_port()));
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(1));
    // As a kill -9 during the freeze leaves it: rows in, the send not marked frozen.
    let db = rusqlite::Connection::open(nl.path("state/brief.db")).unwrap();
    db.execute("UPDATE sends SET frozen_at = NULL, duplicates = 0", [])
        .unwrap();
    drop(db);
    let out = nl.run(&["send", "--edition", "e1"]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l == "1 duplicate addresses in the lists were counted once."),
        "{text}"
    );
}

#[test]
fn a_dispatch_stopped_by_a_held_write_lock_releases_the_edition_lock() {
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(20, Some(free_port()), "concurrency = 2");
    nl.write(
        "editions/due.md",
        "+++\ntitle = \"Due this morning\"\ndate = 2026-11-20\nsend_at = 2026-11-20T08:30:00Z\n+++\n\nThe essay.\n",
    );
    // The relay is down: the audience is frozen, nobody marked.
    assert_eq!(code(&nl.run(&["dispatch"])), Some(1));
    nl.set_smtp(&[("port", &sink.port.to_string())]);
    let mut holder = hold_write_lock(&nl.path("state/brief.db"), 35);
    let mut dispatch = nl
        .command(&["dispatch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(&mut dispatch, Duration::from_secs(120));
    assert!(matches!(code(&out), Some(1) | Some(3)));
    assert!(stderr(&out).contains("state/brief.db"), "{}", stderr(&out));
    let _ = holder.wait();

    let out = nl.run(&["dispatch"]);
    assert_eq!(code(&out), Some(0), "not 75: {}", stderr(&out));
    let counts = sink.counts();
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|&c| c == 1));
}
