//! A statement that commits on the PostgreSQL server while its answer is lost with the
//! connection, so brief runs it again on a new one: a TCP proxy between brief and the
//! private cluster lets one request through, waits until the server has ended its
//! transaction, drops the answer and closes the connection. For the claim (the
//! pipelined `BEGIN; SET LOCAL synchronous_commit TO off` / `UPDATE … RETURNING` /
//! `COMMIT`) the rows it took are sent by the same run, once, and a retry takes
//! nothing of what the sender claimed before and still has queued; for the journal
//! commit (`apply`), a change already committed is not made again over what another
//! sender did in between, and the answer is the one the lost commit had.

use crate::harness::*;
use crate::pg::{finish, on_postgres, start_send};
use crate::pg_claims::{mark, readers};
use brief::store::{Location, State, Store, Suppression, SuppressionSource, Update, REAL};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which request's answer the proxy drops.
#[derive(Clone, Copy)]
enum Request {
    /// A simple query whose text contains this, sent at once with what follows it;
    /// if a parameter is given, only when the Bind that follows in the pipeline has
    /// that 64-bit integer (binary) at that index.
    Query(&'static str, Option<(usize, i64)>),
    /// An execution (Bind) of a prepared statement whose text contains this: its
    /// answer if it is a transaction of its own, else the answer to the COMMIT of the
    /// transaction it is in.
    Prepared(&'static str),
}

/// Runs once the cut transaction has ended on the server, before brief's connection
/// closes: what another sender does meanwhile.
type Meanwhile = Box<dyn FnOnce() + Send>;

struct Plan {
    request: Request,
    /// How many matching requests go through untouched before the one cut.
    pass: usize,
    meanwhile: Option<Meanwhile>,
}

#[derive(Default)]
struct Tally {
    /// Matching requests seen.
    seen: AtomicUsize,
    /// Whether the cut was armed on a connection (it is armed once).
    armed: AtomicBool,
    /// Connections cut after the server ended the transaction.
    cuts: AtomicUsize,
    /// Data rows in the answers that were dropped.
    rows: AtomicUsize,
}

/// A TCP proxy on a loopback port in front of the cluster's port, speaking enough of
/// the PostgreSQL protocol (3.0, in clear) to know where a request begins and where
/// its transaction ends.
struct Proxy {
    port: u16,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(server: u16, plan: Plan) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
        let plan = Arc::new(Mutex::new(plan));
        let (t, s) = (tally.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let upstream = TcpStream::connect(("127.0.0.1", server)).unwrap();
                let (plan, tally) = (plan.clone(), t.clone());
                std::thread::spawn(move || relay(client, upstream, plan, tally));
            }
        });
        Proxy { port, tally, stop }
    }

    /// `url` (a database of the cluster) through the proxy.
    fn url(&self, url: &str) -> String {
        let (_, db) = url.rsplit_once('/').unwrap();
        format!("postgres://brief@127.0.0.1:{}/{db}", self.port)
    }

    fn cuts(&self) -> usize {
        self.tally.cuts.load(Ordering::SeqCst)
    }

    fn dropped_rows(&self) -> usize {
        self.tally.rows.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The NUL-terminated string at the start of `b`, and what follows it.
fn cstr(b: &[u8]) -> (&str, &[u8]) {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    (
        std::str::from_utf8(&b[..end]).unwrap_or(""),
        &b[(end + 1).min(b.len())..],
    )
}

/// Takes the complete messages off the front of `buf`: a type byte and a length, or
/// (`untyped`, the startup) a length alone.
fn messages(buf: &mut Vec<u8>, untyped: bool) -> Vec<Vec<u8>> {
    let head = usize::from(!untyped);
    let mut out = Vec::new();
    while buf.len() >= head + 4 {
        let len = u32::from_be_bytes(buf[head..head + 4].try_into().unwrap()) as usize;
        if buf.len() < head + len {
            break;
        }
        out.push(buf.drain(..head + len).collect());
        if untyped {
            break;
        }
    }
    out
}

/// What the two directions of one connection share.
#[derive(Default)]
struct Connection {
    /// The server's transaction status in its last ReadyForQuery (`I` idle).
    status: Mutex<u8>,
    /// From here on the server's answer is held, and dropped at the transaction's end.
    cutting: AtomicBool,
}

/// One connection: messages are read whole and passed on, until the client sends the
/// planned request. From there the server's answer is kept from the client until the
/// server reports the transaction ended (ReadyForQuery, idle); then both sides close.
fn relay(
    mut client: TcpStream,
    mut upstream: TcpStream,
    plan: Arc<Mutex<Plan>>,
    tally: Arc<Tally>,
) {
    let conn = Arc::new(Connection::default());
    *conn.status.lock().unwrap() = b'I';
    let (mut from_server, mut to_client) =
        (upstream.try_clone().unwrap(), client.try_clone().unwrap());
    let closing = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let (answers, answers_plan, answers_tally) = (conn.clone(), plan.clone(), tally.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        let mut pending = Vec::new();
        loop {
            let n = match from_server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            for m in messages(&mut pending, false) {
                if !answers.cutting.load(Ordering::SeqCst) {
                    if m[0] == b'Z' {
                        *answers.status.lock().unwrap() = m[5];
                    }
                    if to_client.write_all(&m).is_err() {
                        return;
                    }
                    continue;
                }
                if m[0] == b'D' {
                    answers_tally.rows.fetch_add(1, Ordering::SeqCst);
                }
                if m[0] == b'Z' && m[5] == b'I' {
                    // The transaction is over on the server: committed (or failed).
                    let meanwhile = answers_plan.lock().unwrap().meanwhile.take();
                    if let Some(f) = meanwhile {
                        f();
                    }
                    answers_tally.cuts.fetch_add(1, Ordering::SeqCst);
                    let _ = closing.0.shutdown(Shutdown::Both);
                    let _ = closing.1.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let mut startup = true;
    let mut prepared: HashSet<String> = HashSet::new();
    // A planned statement ran inside a transaction: its COMMIT is the request to cut.
    let mut commit_cuts = false;
    // A query that is cut or not depending on the Bind after it, held until then.
    let mut held: Option<Vec<u8>> = None;
    let mut pending = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        for m in messages(&mut pending, startup) {
            if startup {
                let code = u32::from_be_bytes(m[4..8].try_into().unwrap());
                assert_ne!(code, 80_877_103, "the proxy speaks no TLS");
                startup = code != 196_608;
            } else {
                let idle = *conn.status.lock().unwrap() == b'I';
                let cut = match (m[0], plan.lock().unwrap().request) {
                    (b'Q', Request::Query(text, None)) => cstr(&m[5..]).0.contains(text),
                    (b'Q', Request::Query(text, Some(_))) if cstr(&m[5..]).0.contains(text) => {
                        held = Some(m);
                        continue;
                    }
                    (b'B', Request::Query(_, Some((index, value)))) if held.is_some() => {
                        bound(&m[5..], index) == Some(value)
                    }
                    (b'Q', Request::Prepared(_)) => {
                        std::mem::take(&mut commit_cuts) && cstr(&m[5..]).0.starts_with("COMMIT")
                    }
                    (b'P', Request::Prepared(text)) => {
                        let (name, rest) = cstr(&m[5..]);
                        if cstr(rest).0.contains(text) {
                            prepared.insert(name.to_string());
                        }
                        false
                    }
                    (b'B', Request::Prepared(_)) => {
                        let (_portal, rest) = cstr(&m[5..]);
                        let planned = prepared.contains(cstr(rest).0);
                        commit_cuts |= planned && !idle;
                        planned && idle
                    }
                    _ => false,
                };
                if cut && planned(&plan, &tally) {
                    conn.cutting.store(true, Ordering::SeqCst);
                }
            }
            for m in held.take().into_iter().chain([m]) {
                if upstream.write_all(&m).is_err() {
                    return;
                }
            }
        }
    }
    let _ = upstream.shutdown(Shutdown::Both);
}

/// The 64-bit integer parameter `index` of a Bind message's `body`, if it is one.
fn bound(body: &[u8], index: usize) -> Option<i64> {
    let (_portal, rest) = cstr(body);
    let (_statement, rest) = cstr(rest);
    let short = |b: &[u8], at: usize| usize::from(u16::from_be_bytes([b[at], b[at + 1]]));
    let formats = short(rest, 0);
    let mut at = 2 + 2 * formats + 2;
    for i in 0..short(rest, 2 + 2 * formats) {
        let len = i32::from_be_bytes(rest[at..at + 4].try_into().unwrap());
        at += 4;
        let value = &rest[at..at + len.max(0) as usize];
        if i == index {
            return Some(i64::from_be_bytes(value.try_into().ok()?));
        }
        at += len.max(0) as usize;
    }
    None
}

/// Whether a matching request is the one to cut: the first after those the plan lets
/// pass, once in the proxy's life.
fn planned(plan: &Mutex<Plan>, tally: &Tally) -> bool {
    tally.seen.fetch_add(1, Ordering::SeqCst) == plan.lock().unwrap().pass
        && !tally.armed.swap(true, Ordering::SeqCst)
}

fn connect(url: &str) -> Store {
    Store::connect(&Location::Postgres {
        url: url.into(),
        password: None,
    })
    .expect("connect to the test cluster")
}

/// One row as the database holds it: its state and the worker that holds it.
fn row(url: &str, id: i64) -> (String, Option<i64>) {
    let out = postgres().sql(
        url,
        &format!("SELECT state, coalesce(claimed_by::text, '-') FROM journal WHERE id = {id}"),
    );
    let (state, by) = out.split_once('|').unwrap();
    (state.to_string(), by.parse().ok())
}

/// The id of the newest sender on `url` that is this test process (its `workers`
/// row's pid).
fn worker_of_this_process(url: &str) -> i64 {
    postgres()
        .sql(
            url,
            &format!(
                "SELECT id FROM workers WHERE pid = {} ORDER BY id DESC LIMIT 1",
                std::process::id()
            ),
        )
        .parse()
        .unwrap()
}

#[test]
fn a_claim_whose_commit_landed_but_whose_answer_was_lost_is_sent_by_the_same_run_once() {
    let db = postgres().database();
    // The third pipelined claim (the first page is claimed before the producer starts,
    // in a lone statement): it takes rows past those of the earlier pages, which the
    // producer may still have in its queue (a claim that looks again for what another
    // sender hands back, while those are queued, is the next test).
    let proxy = Proxy::start(
        postgres().port,
        Plan {
            request: Request::Query("synchronous_commit TO off", None),
            pass: 2,
            meanwhile: None,
        },
    );
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(60, Some(sink.port), "concurrency = 2");
    on_postgres(&nl, &proxy.url(&db));
    let (code, report) = finish(start_send(&nl), std::time::Duration::from_secs(120));
    assert_eq!(
        proxy.cuts(),
        1,
        "the proxy never cut a claim's answer: the test proves nothing"
    );
    assert!(
        proxy.dropped_rows() > 0,
        "the claim that was cut took no rows: the test proves nothing"
    );
    let counts = sink.counts();
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    assert_eq!(counts.len(), 60, "nobody else: {counts:?}");
    let s = nl.status(false);
    assert_eq!((n(&s, "pending"), n(&s, "sent")), (0, 60), "{s}");
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(n(&report, "sent"), 60, "{report}");
}

/// A claim that looks again for what another sender hands back (`after`: just below
/// the first row that sender holds) is cut while this sender's queue still holds
/// readers it claimed earlier and has not marked yet: the retry must not take those
/// again.
#[test]
fn a_lost_claim_that_looks_again_does_not_take_again_what_this_sender_has_queued() {
    let db = postgres().database();
    // A second before every DATA reply, one connection: the queue fills up ahead of it.
    let sink = Server::smtp_sink(&["-w", "1"]);
    let closed = free_port();
    let nl = Newsletter::generated_with(12, Some(closed), "concurrency = 1");
    on_postgres(&nl, &db);
    // Freeze the audience without touching anyone: the relay refuses the session.
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(1), "{}", crate::pg::stderr(&out));
    // Another sender, alive, holds the last two readers, claimed and not yet tried.
    let other = postgres().sql(
        &db,
        "INSERT INTO workers (edition, namespace, host, pid, started_at)
         VALUES ('e1', 'send', 'elsewhere', 1, '2026-12-01T00:00:00Z') RETURNING id",
    );
    let other = other.lines().next().unwrap().to_string();
    let theirs = &nl.readers[10..];
    postgres().sql(
        &db,
        &format!(
            "UPDATE journal SET claimed_by = {other} WHERE address IN ('{}', '{}')",
            theirs[0], theirs[1]
        ),
    );
    let below_theirs: i64 = postgres()
        .sql(
            &db,
            &format!("SELECT id - 1 FROM journal WHERE address = '{}'", theirs[0]),
        )
        .parse()
        .unwrap();
    let proxy = Proxy::start(
        postgres().port,
        Plan {
            // `$4` of the claim is `after`.
            request: Request::Query("synchronous_commit TO off", Some((3, below_theirs))),
            pass: 0,
            meanwhile: None,
        },
    );
    nl.write(
        "brief.toml",
        &nl.read("brief.toml")
            .replace(
                &format!("port = {closed}"),
                &format!("port = {}", sink.port),
            )
            .replace(&db, &proxy.url(&db)),
    );
    let send = start_send(&nl);
    let mine = &nl.readers[..10];
    let started = std::time::Instant::now();
    while !mine.iter().all(|r| sink.counts().contains_key(r)) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "this sender's own readers were not all sent: {:?}",
            sink.counts()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The other sender leaves, handing its two back: this one sends them and ends.
    postgres().sql(
        &db,
        &format!(
            "UPDATE journal SET claimed_by = NULL WHERE claimed_by = {other};
             DELETE FROM workers WHERE id = {other}"
        ),
    );
    let (code, report) = finish(send, std::time::Duration::from_secs(60));
    assert_eq!(
        proxy.cuts(),
        1,
        "the proxy never cut the claim that looks again: the test proves nothing"
    );
    let counts = sink.counts();
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    let s = nl.status(false);
    assert_eq!((n(&s, "pending"), n(&s, "sent")), (0, 12), "{s}");
    assert_eq!(code, Some(0), "{report}");
}

/// A second sender's store and the rows it claimed.
type OtherSender = (Store, Vec<i64>);

#[test]
fn a_journal_commit_whose_answer_was_lost_is_not_made_again_over_another_senders_mark() {
    let db = postgres().database();
    let now = brief::clock::now();
    // Meanwhile a second sender (straight to the cluster) claims the row the first
    // one handed back, and marks it in doubt: its message is on its way.
    // It stays on the send (alive) to the end of the test.
    let other: Arc<Mutex<Option<OtherSender>>> = Arc::default();
    let (slot, url) = (other.clone(), db.clone());
    let proxy = Proxy::start(
        postgres().port,
        Plan {
            request: Request::Prepared("WITH u AS MATERIALIZED"),
            pass: 0,
            meanwhile: Some(Box::new(move || {
                let b = connect(&url);
                let due: Vec<i64> = b
                    .due("e1", REAL, 0, now, false, 10)
                    .unwrap()
                    .iter()
                    .map(|e| e.id)
                    .collect();
                let marks: Vec<Update> = due.iter().map(|&id| mark(id, now)).collect();
                assert_eq!(b.apply(&marks).unwrap(), Vec::<i64>::new());
                *slot.lock().unwrap() = Some((b, due));
            })),
        },
    );
    let a = connect(&proxy.url(&db));
    a.freeze("e1", REAL, now, &mut readers(3).into_iter(), &mut || 0)
        .unwrap();
    let due = a.due("e1", REAL, 0, now, false, 10).unwrap();
    assert_eq!(due.len(), 3);
    let me = worker_of_this_process(&db);
    // The first sender hands one back, never tried (the run stopping): that commit
    // lands, its answer does not.
    let handed_back = due[0].id;
    let refused = a
        .apply(&[Update::new(handed_back, State::Pending, now)])
        .unwrap();
    assert_eq!(proxy.cuts(), 1, "the proxy never cut a commit's answer");
    assert_eq!(refused, Vec::<i64>::new());
    let guard = other.lock().unwrap();
    let (_b, taken) = guard.as_ref().expect("the other sender ran");
    assert_eq!(
        taken,
        &vec![handed_back],
        "the other sender took the row back"
    );
    let (state, by) = row(&db, handed_back);
    assert_eq!(
        state, "in_doubt",
        "the lost commit was made again over the other sender's mark"
    );
    assert!(
        by.is_some_and(|w| w != me),
        "held by the other sender: {by:?}"
    );
    // Had it been made again, the row would be pending and free, and sent twice.
    assert_eq!(a.due("e1", REAL, 0, now, false, 10).unwrap().len(), 0);
    // The first sender still holds its other two rows.
    assert_eq!(row(&db, due[1].id), ("pending".into(), Some(me)));
    assert_eq!(row(&db, due[2].id), ("pending".into(), Some(me)));
}

#[test]
fn a_journal_commit_whose_answer_was_lost_answers_what_it_did() {
    let db = postgres().database();
    let now = brief::clock::now();
    // A transaction of two runs (a row changed twice), cut after its COMMIT.
    let proxy = Proxy::start(
        postgres().port,
        Plan {
            request: Request::Prepared("WITH u AS MATERIALIZED"),
            pass: 0,
            meanwhile: None,
        },
    );
    let a = connect(&proxy.url(&db));
    a.freeze("e1", REAL, now, &mut readers(3).into_iter(), &mut || 0)
        .unwrap();
    let due = a.due("e1", REAL, 0, now, false, 10).unwrap();
    let me = worker_of_this_process(&db);
    a.suppress(&Suppression {
        address: due[1].address.clone(),
        suppressed_at: now,
        source: SuppressionSource::OneClick,
        edition: Some("e1".into()),
    })
    .unwrap();
    let refused = a
        .apply(&[
            mark(due[0].id, now),
            mark(due[1].id, now),
            mark(due[2].id, now),
            Update::new(due[2].id, State::Pending, now),
        ])
        .unwrap();
    assert_eq!(proxy.cuts(), 1, "the proxy never cut a commit's answer");
    assert_eq!(
        refused,
        vec![due[1].id],
        "the suppressed one, as the lost answer said"
    );
    assert_eq!(row(&db, due[0].id), ("in_doubt".into(), Some(me)));
    assert_eq!(row(&db, due[1].id), ("suppressed".into(), None));
    assert_eq!(row(&db, due[2].id), ("pending".into(), None));
}

/// Version 4 of the schema (the tokens), and the versions after it, are added to a
/// store that brief version 3 wrote, on first use, and a send on it works.
#[test]
fn a_store_of_schema_version_3_gets_the_tokens_on_first_use() {
    let db = postgres().database();
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(6, Some(sink.port), "concurrency = 2");
    on_postgres(&nl, &db);
    assert_eq!(code(&nl.run(&["unsubscribe", &nl.readers[0]])), Some(0));
    // As version 3 left it.
    postgres().sql(&db, crate::pg_hot::VERSION_4_LAYOUT);
    postgres().sql(
        &db,
        "ALTER TABLE journal DROP COLUMN claim;
         ALTER TABLE workers DROP COLUMN applied, DROP COLUMN applied_refused;
         UPDATE brief_schema SET version = 3",
    );
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", crate::pg::stderr(&out));
    assert_eq!(postgres().sql(&db, "SELECT version FROM brief_schema"), "5");
    assert_eq!(
        postgres().sql(
            &db,
            "SELECT count(*) FROM information_schema.columns
             WHERE (table_name, column_name) IN
                   (('journal', 'claim'), ('workers', 'applied'), ('workers', 'applied_refused'))"
        ),
        "3"
    );
    assert_eq!(
        sink.counts().len(),
        5,
        "every reader but the unsubscribed one"
    );
    let s = nl.status(false);
    assert_eq!((n(&s, "sent"), n(&s, "suppressed")), (5, 1), "{s}");
}
