//! More of the PostgreSQL store against real clusters: TLS to the database with a
//! private CA made at test time, two `brief dispatch` runs joining one send,
//! `rate_per_second` held across senders (the sink's arrival times), and a database
//! that stays away past the bounded wait (exit 3, nothing lost).

use crate::harness::*;
use crate::pg::{
    finish, in_doubt_addresses, on_postgres, start_send, stderr, wait_for_messages, Killed,
};
use crate::tls::Ca;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

/// A cluster serving TLS with a certificate for 127.0.0.1 signed by `ca`, accepting
/// TCP connections over TLS only (so a send that works went over TLS); `other` is a CA
/// that signed nothing of it. One per test binary.
struct TlsCluster {
    cluster: Postgres,
    ca: Ca,
    other: Ca,
}

fn tls_cluster() -> &'static TlsCluster {
    static CLUSTER: std::sync::OnceLock<TlsCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| {
        let ca = Ca::new("brief test database CA");
        let (cert, key) = ca.issue("db", "IP:127.0.0.1");
        TlsCluster {
            cluster: Postgres::start_tls(&cert, &key),
            ca,
            other: Ca::new("another CA"),
        }
    })
}

const PASSWORD: &str = "pw-7f3c9a-never-printed";

/// A newsletter of 3 readers on `url` (with a password from the environment), and
/// `brief send --edition e1`'s output.
fn send_over(url: &str, sink: &Server) -> (Newsletter, std::process::Output) {
    let nl = Newsletter::generated(3, Some(sink.port));
    let mut config = nl.read("brief.toml");
    config.push_str(&format!(
        "\n[state]\nurl = \"{url}\"\npassword_env = \"BRIEF_TEST_DB_PASSWORD\"\n"
    ));
    nl.write("brief.toml", &config);
    let out = nl
        .command(&["send", "--edition", "e1"])
        .env("BRIEF_TEST_DB_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    (nl, out)
}

/// `url` with `sslmode` and `sslrootcert`.
fn with_tls(url: &str, mode: &str, root: Option<PathBuf>) -> String {
    let root = root.map_or_else(String::new, |r| format!("&sslrootcert={}", r.display()));
    format!("{url}?sslmode={mode}{root}")
}

/// A refused connection: exit 1, a message naming the database and `why`, never the
/// password, and nothing sent.
fn assert_refused(out: &std::process::Output, sink: &Server, why: &str) {
    let err = stderr(out);
    eprintln!("{err}");
    assert_eq!(code(out), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the database postgres://brief@"),
        "{err}"
    );
    assert!(err.contains(why), "{why}: {err}");
    assert!(!err.contains(PASSWORD), "the password is printed: {err}");
    assert!(sink.messages().is_empty(), "nothing is sent");
}

#[test]
fn a_send_over_verify_full_with_a_private_ca_delivers_every_reader() {
    let tls = tls_cluster();
    let sink = Server::smtp_sink(&[]);
    let database = tls.cluster.database();
    let url = with_tls(&database, "verify-full", Some(tls.ca.cert()));
    let (nl, out) = send_over(&url, &sink);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let counts = sink.counts();
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    assert_eq!(counts.len(), 3);
    assert_eq!(
        tls.cluster.sql(
            &database,
            "SELECT count(*) FROM journal WHERE state = 'sent'"
        ),
        "3",
        "the journal is in the database reached over TLS"
    );
}

#[test]
fn the_tls_cluster_refuses_a_connection_in_clear() {
    // What makes the test above prove TLS: the same database without sslmode.
    let tls = tls_cluster();
    let sink = Server::smtp_sink(&[]);
    let (_, out) = send_over(&tls.cluster.database(), &sink);
    assert_refused(&out, &sink, "no encryption");
}

#[test]
fn a_database_certificate_not_signed_by_sslrootcert_is_refused() {
    let tls = tls_cluster();
    let sink = Server::smtp_sink(&[]);
    let url = with_tls(
        &tls.cluster.database(),
        "verify-full",
        Some(tls.other.cert()),
    );
    let (_, out) = send_over(&url, &sink);
    assert_refused(&out, &sink, "certificate");
    assert!(stderr(&out).contains("UnknownIssuer"), "{}", stderr(&out));
}

#[test]
fn a_database_certificate_for_another_host_name_is_refused_under_verify_full() {
    let tls = tls_cluster();
    let sink = Server::smtp_sink(&[]);
    // The certificate names 127.0.0.1; `localhost` reaches the same server.
    let url = tls.cluster.database().replace("@127.0.0.1:", "@localhost:");
    let url = with_tls(&url, "verify-full", Some(tls.ca.cert()));
    let (_, out) = send_over(&url, &sink);
    assert_refused(&out, &sink, "certificate");
    assert!(
        stderr(&out).contains("not valid for name \"localhost\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sslmode_require_against_a_server_without_tls_is_refused() {
    let sink = Server::smtp_sink(&[]);
    let url = with_tls(&postgres().database(), "require", None);
    let (_, out) = send_over(&url, &sink);
    assert_refused(&out, &sink, "TLS");
}

/// Waits (bounded) for a started brief: its whole output (killed past `limit`).
fn wait_output(mut run: Killed, limit: Duration) -> std::process::Output {
    let started = Instant::now();
    while run.0.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = run.0.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let child = std::mem::replace(
        &mut run.0,
        std::process::Command::new("true").spawn().unwrap(),
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() <= limit,
        "brief did not finish within {limit:?}: {}",
        stderr(&out)
    );
    eprintln!("{}", stderr(&out));
    out
}

fn spawn(nl: &Newsletter, args: &[&str]) -> Killed {
    Killed(
        nl.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start brief"),
    )
}

#[test]
fn two_dispatch_runs_on_one_postgresql_store_join_one_send_and_report_once() {
    // A second before every DATA reply: both runs are on the send before it is done.
    let sink = Server::smtp_sink(&["-w", "1"]);
    let nl = Newsletter::generated_with(32, Some(sink.port), "concurrency = 2\nreport = true");
    let url = postgres().database();
    on_postgres(&nl, &url);
    // Due an hour before the test clock: cron fires on two machines at once.
    let edition = nl.read("editions/e1.md").replacen(
        "date = 2026-11-20\n",
        "date = 2026-11-20\nsend_at = 2026-11-20T08:00:00Z\n",
        1,
    );
    nl.write("editions/e1.md", &edition);
    let runs: Vec<Killed> = (0..2).map(|_| spawn(&nl, &["dispatch"])).collect();
    for run in runs {
        let out = wait_output(run, Duration::from_secs(90));
        assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    }
    let counts = sink.counts();
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    // The editors' report went out once, not once per run.
    for editor in ["edith@example.org", "ezra@example.org"] {
        assert_eq!(counts.get(editor), Some(&1), "{editor}: {counts:?}");
    }
    assert_eq!(counts.len(), 32 + 2, "nobody else");
    // Both did a share: the journal keeps who sent each reader.
    let shares = postgres().sql(
        &url,
        "SELECT count(*) FROM journal WHERE namespace = 'send' AND state = 'sent'
         GROUP BY claimed_by ORDER BY 1",
    );
    let shares: Vec<u64> = shares.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(shares.len(), 2, "two senders: {shares:?}");
    assert!(shares.iter().all(|&n| n > 0), "{shares:?}");
    assert_eq!(shares.iter().sum::<u64>(), 32);
    // The dispatch state, once: one send, finished; one remembered report.
    assert_eq!(
        postgres().sql(
            &url,
            "SELECT count(*), count(finished_at) FROM sends WHERE edition = 'e1'"
        ),
        "1|1"
    );
    assert_eq!(
        postgres().sql(&url, "SELECT kind FROM reports WHERE edition = 'e1'"),
        "send"
    );
    assert_eq!(nl.status(false)["state"], "complete");
    // A later dispatch finds it complete: nothing more, no second report.
    let again = nl.run(&["dispatch"]);
    assert_eq!(code(&again), Some(0), "{}", stderr(&again));
    assert_eq!(sink.messages().len(), 34);
}

/// When each message reached the sink (its file's modification time), in order.
fn arrivals(sink: &Server) -> Vec<SystemTime> {
    let mut times: Vec<SystemTime> = std::fs::read_dir(sink.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.path().to_string_lossy().ends_with(".tmp"))
        .map(|e| e.metadata().unwrap().modified().unwrap())
        .collect();
    times.sort();
    times
}

#[test]
fn rate_per_second_bounds_the_whole_send_across_two_senders() {
    const RATE: f64 = 20.0;
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(
        240,
        Some(sink.port),
        &format!("concurrency = 2\nrate_per_second = {RATE}"),
    );
    on_postgres(&nl, &postgres().database());
    let (first, second) = (start_send(&nl), start_send(&nl));
    let limit = Duration::from_secs(120);
    let (code_a, a) = finish(first, limit);
    let (code_b, b) = finish(second, limit);
    assert_eq!((code_a, code_b), (Some(0), Some(0)), "{a}\n{b}");
    let (own_a, own_b) = (&a, &b);
    assert!(
        n(own_a, "sent") > 0 && n(own_b, "sent") > 0,
        "both did a share: {own_a} {own_b}"
    );
    assert!(sink.counts().values().all(|&c| c == 1));
    let times = arrivals(&sink);
    assert_eq!(times.len(), 240);
    let mut per_second =
        vec![0; 1 + times[239].duration_since(times[0]).unwrap().as_secs() as usize];
    for t in &times {
        per_second[t.duration_since(times[0]).unwrap().as_secs() as usize] += 1;
    }
    eprintln!("messages per second: {per_second:?}");
    // Until a sender's heartbeat (every 2 s) has counted the other, each may go at
    // the full rate: judge from 3 s after the first message on.
    let from = times[0] + Duration::from_secs(3);
    let live: Vec<SystemTime> = times.into_iter().filter(|t| *t >= from).collect();
    // No 2-second window above the rate, with a quarter of slack and one bucket's
    // burst; two unshared limits (2 × RATE) would fill it with 80.
    let window = Duration::from_secs(2);
    let bound = (RATE * 2.0 * 1.25 + RATE) as usize;
    for (i, start) in live.iter().enumerate() {
        let within = live[i..]
            .iter()
            .take_while(|t| t.duration_since(*start).unwrap() < window)
            .count();
        assert!(within <= bound, "{within} messages in 2 s (bound {bound})");
    }
    // And over the whole judged span, most of the send.
    assert!(
        live.len() >= 100,
        "most of the send is judged: {}",
        live.len()
    );
    let span = live
        .last()
        .unwrap()
        .duration_since(live[0])
        .unwrap()
        .as_secs_f64();
    let rate = (live.len() - 1) as f64 / span;
    assert!(rate <= RATE * 1.25, "{rate:.1} messages a second");
}

#[test]
fn a_database_away_longer_than_the_wait_stops_the_send_with_exit_3_and_loses_nothing() {
    // Its own cluster: this test stops it.
    let cluster = Postgres::start();
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(
        400,
        Some(sink.port),
        "concurrency = 2\nrate_per_second = 40",
    );
    on_postgres(&nl, &cluster.database());
    let send = start_send(&nl);
    wait_for_messages(&sink, 40);
    cluster.stop();
    // brief waits 30 s for the database, then stops on its own.
    let out = wait_output(send, Duration::from_secs(120));
    let err = stderr(&out);
    assert_eq!(code(&out), Some(3), "{err}");
    assert!(
        err.contains("the send stopped: the state store postgres://brief@127.0.0.1:")
            && err.contains(
                "went away and stayed away longer than brief waits for it (30s); nothing is lost"
            ),
        "{err}"
    );
    let by_first = sink.messages().len();
    assert!(by_first < 400, "the send was stopped midway");
    // Back: the next run sends the rest.
    cluster.run();
    let (code_b, report) = finish(start_send(&nl), Duration::from_secs(120));
    let counts = sink.counts();
    let s = nl.status(false);
    let in_doubt = in_doubt_addresses(&nl);
    assert!(
        in_doubt.len() <= 4,
        "at most 2 in doubt per connection: {in_doubt:?}"
    );
    for reader in &in_doubt {
        assert!(counts.get(reader).copied().unwrap_or(0) <= 1, "{reader}");
    }
    for reader in nl.readers.iter().filter(|r| !in_doubt.contains(r)) {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    assert_eq!(
        (n(&s, "sent") + n(&s, "in_doubt"), n(&s, "pending")),
        (400, 0),
        "{s}"
    );
    assert_eq!(
        code_b,
        Some(if in_doubt.is_empty() { 0 } else { 3 }),
        "{report}"
    );
    // Held: a later run sends none of them.
    let mailed = sink.messages().len();
    let again = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(sink.messages().len(), mailed, "{}", stderr(&again));
}

#[test]
fn a_claim_that_finds_the_first_rows_locked_by_another_claim_waits_instead_of_giving_up() {
    // Two senders claiming at the same instant (both waited for the freeze): one's
    // claim passes over the rows the other's claim, not yet committed, has locked. An
    // empty claim then is no sign that the send is done.
    let nl = Newsletter::generated_with(40, Some(free_port()), "concurrency = 2");
    let url = postgres().database();
    on_postgres(&nl, &url);
    // Nobody listens on the relay's port: the audience is frozen, nobody is marked.
    assert_eq!(code(&nl.run(&["send", "--edition", "e1"])), Some(1));
    let unclaimed = "SELECT count(*) FROM journal WHERE state = 'pending' AND claimed_by IS NULL";
    assert_eq!(postgres().sql(&url, unclaimed), "40");
    let sink = Server::smtp_sink(&[]);
    nl.set_smtp(&[("port", &sink.port.to_string())]);
    // Another sender's claim in flight: the first rows of the list locked (a claim
    // takes 4 per connection, so these are all a claim of this sender looks at).
    let mut other = postgres().session(
        &url,
        "BEGIN; SELECT id FROM journal WHERE state = 'pending' ORDER BY id LIMIT 8 FOR UPDATE;",
    );
    let send = start_send(&nl);
    std::thread::sleep(Duration::from_secs(3));
    // The other claim ends without taking them (its sender went away).
    use std::io::Write;
    writeln!(other.stdin.as_mut().unwrap(), "ROLLBACK;").unwrap();
    drop(other.stdin.take());
    let _ = other.wait();
    let (code, report) = finish(send, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(n(&report, "sent"), 40);
    let counts = sink.counts();
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
}

#[test]
fn brief_dispatch_stops_with_exit_3_when_the_database_stays_away_and_the_next_dispatch_continues() {
    let cluster = Postgres::start();
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(
        200,
        Some(sink.port),
        "concurrency = 2\nrate_per_second = 40",
    );
    on_postgres(&nl, &cluster.database());
    let edition = nl.read("editions/e1.md").replacen(
        "date = 2026-11-20\n",
        "date = 2026-11-20\nsend_at = 2026-11-20T08:00:00Z\n",
        1,
    );
    nl.write("editions/e1.md", &edition);
    let dispatch = spawn(&nl, &["dispatch"]);
    wait_for_messages(&sink, 20);
    cluster.stop();
    let out = wait_output(dispatch, Duration::from_secs(120));
    let err = stderr(&out);
    assert_eq!(code(&out), Some(3), "{err}");
    assert!(
        err.contains("e1: the send stopped: the state store postgres://brief@127.0.0.1:")
            && err.contains("nothing is lost"),
        "{err}"
    );
    assert!(sink.messages().len() < 200, "stopped midway");
    cluster.run();
    let again = wait_output(spawn(&nl, &["dispatch"]), Duration::from_secs(120));
    let s = nl.status(false);
    let in_doubt = n(&s, "in_doubt");
    assert!(in_doubt <= 4, "at most 2 in doubt per connection: {s}");
    assert_eq!(
        (n(&s, "sent") + in_doubt, n(&s, "pending")),
        (200, 0),
        "{s}"
    );
    assert_eq!(
        code(&again),
        Some(if in_doubt == 0 { 0 } else { 3 }),
        "{}",
        stderr(&again)
    );
    // Every reader recorded as sent got it once; one in doubt at most once.
    let counts = sink.counts();
    assert!(counts.values().all(|&c| c == 1), "nobody twice: {counts:?}");
    let received = counts.len() as u64;
    assert!(
        (n(&s, "sent")..=n(&s, "sent") + in_doubt).contains(&received),
        "{received} received: {s}"
    );
}
