//! The claim and commit path of the PostgreSQL store, at the store's own interface:
//! claims taken from another thread (apart from the journal writer) belong to their
//! sender and leave the rest to a second one; a journal commit is one statement that
//! checks the suppression list and the claim with the in-doubt mark, in one
//! transaction, and a batch that changes one row twice still keeps its order. And,
//! end to end, a sender that joins a running send still gets a share though the first
//! one claims ahead of its connections.

use crate::harness::*;
use brief::store::{
    Location, NewRecipient, State, Store, Suppression, SuppressionSource, Update, REAL,
};

fn connect(url: &str) -> Store {
    Store::connect(&Location::Postgres {
        url: url.into(),
        password: None,
    })
    .expect("connect to the test cluster")
}

/// `n` readers r000@x.org, r001@x.org, … to freeze.
pub(crate) fn readers(n: usize) -> Vec<NewRecipient> {
    (0..n)
        .map(|i| NewRecipient {
            address: format!("r{i:03}@x.org"),
            name: String::new(),
            fields: "{}".into(),
        })
        .collect()
}

/// The in-doubt mark a sender makes for row `id` before its body goes out.
pub(crate) fn mark(id: i64, at: chrono::DateTime<chrono::Utc>) -> Update {
    let mut u = Update::new(id, State::InDoubt, at);
    u.unless_suppressed = true;
    u.message_id = Some(format!("<m{id}@news.example.org>"));
    u
}

/// One row as the database holds it: state, message id, attempts, whether claimed.
fn row(url: &str, id: i64) -> (String, Option<String>, i64, bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let r = client
            .query_one(
                "SELECT state, message_id, attempts, claimed_by IS NOT NULL FROM journal WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    })
}

#[test]
fn claims_from_another_thread_belong_to_their_sender_and_a_second_sender_takes_the_rest() {
    let url = postgres().database();
    let a = connect(&url);
    let now = brief::clock::now();
    a.freeze("e1", REAL, now, &mut readers(40).into_iter(), &mut || 0)
        .unwrap();
    assert!(a.claimer().is_none(), "no claimer before the first claim");
    let first = a.due("e1", REAL, 0, now, false, 8).unwrap();
    assert_eq!(first.len(), 8);
    let claimer = a.claimer().expect("a claimer once joined");
    // The delivery runtime's producer: its own thread and runtime, not the store's.
    let last = first.last().unwrap().id;
    let ahead = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(claimer.due(last, brief::clock::now(), false, 8))
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(ahead.len(), 8);
    assert!(ahead.iter().all(|e| e.id > last), "after the cursor");
    let mine: Vec<i64> = first.iter().chain(&ahead).map(|e| e.id).collect();
    // A second sender joining now gets everything the first does not hold.
    let b = connect(&url);
    let theirs = b.due("e1", REAL, 0, now, false, 100).unwrap();
    assert_eq!(theirs.len(), 40 - 16);
    assert!(theirs.iter().all(|e| !mine.contains(&e.id)), "{theirs:?}");
    // The first sender's marks land on its claims, and only there.
    let mut marks: Vec<Update> = mine.iter().map(|&id| mark(id, now)).collect();
    marks.push(mark(theirs[0].id, now));
    let refused = a.apply(&marks).unwrap();
    assert_eq!(refused, vec![theirs[0].id], "a row the other sender holds");
    assert_eq!(a.counts("e1", REAL).unwrap().in_doubt, 16);
    assert_eq!(row(&url, theirs[0].id).0, "pending");
}

#[test]
fn a_suppression_written_after_the_claim_refuses_the_mark_and_keeps_the_row_as_it_was() {
    let url = postgres().database();
    let s = connect(&url);
    let now = brief::clock::now();
    s.freeze("e1", REAL, now, &mut readers(4).into_iter(), &mut || 0)
        .unwrap();
    let due = s.due("e1", REAL, 0, now, false, 10).unwrap();
    assert!(due.iter().all(|e| !e.suppressed));
    // `brief serve` on a web host, between this sender's claim and its mark.
    let other = connect(&url);
    other
        .suppress(&Suppression {
            address: due[1].address.to_uppercase(),
            suppressed_at: now,
            source: SuppressionSource::OneClick,
            edition: Some("e1".into()),
        })
        .unwrap();
    let mut sent = Update::new(due[0].id, State::Sent, now);
    sent.attempt = true;
    sent.reply = Some("250 ok".into());
    // A mark and, in the same batch, its revert (never tried): the batch is applied
    // in two runs in one transaction, in order.
    let refused = s
        .apply(&[
            sent,
            mark(due[1].id, now),
            mark(due[2].id, now),
            mark(due[3].id, now),
            Update::new(due[3].id, State::Pending, now),
        ])
        .unwrap();
    assert_eq!(refused, vec![due[1].id]);
    assert_eq!(row(&url, due[0].id), ("sent".into(), None, 1, true));
    assert_eq!(
        row(&url, due[1].id),
        ("suppressed".into(), None, 0, false),
        "suppressed, not marked: no Message-ID, no attempt, released"
    );
    assert_eq!(
        row(&url, due[2].id),
        (
            "in_doubt".into(),
            Some(format!("<m{}@news.example.org>", due[2].id)),
            0,
            true
        )
    );
    let (state, _, attempts, claimed) = row(&url, due[3].id);
    assert_eq!((state.as_str(), attempts, claimed), ("pending", 0, false));
    let c = s.counts("e1", REAL).unwrap();
    assert_eq!((c.sent, c.suppressed, c.in_doubt, c.pending), (1, 1, 1, 1));
}

#[test]
fn a_sender_that_joins_a_running_send_takes_a_share_of_what_the_first_has_not_claimed() {
    use crate::pg::{finish, on_postgres, start_send, wait_for_messages};
    // A second before every DATA reply: the first sender has most of the list still
    // to go when the second joins, though it claims ahead of its connections.
    let sink = Server::smtp_sink(&["-w", "1"]);
    let nl = Newsletter::generated_with(40, Some(sink.port), "concurrency = 2");
    on_postgres(&nl, &postgres().database());
    let first = start_send(&nl);
    wait_for_messages(&sink, 2);
    let second = start_send(&nl);
    let limit = std::time::Duration::from_secs(60);
    let (code_a, a) = finish(first, limit);
    let (code_b, b) = finish(second, limit);
    assert_eq!((code_a, code_b), (Some(0), Some(0)), "{a}\n{b}");
    let counts = sink.counts();
    for reader in &nl.readers {
        assert_eq!(counts.get(reader), Some(&1), "{reader}: {counts:?}");
    }
    assert!(
        n(&b, "sent") >= 8,
        "the second sender took a share: {}, the first {}",
        n(&b, "sent"),
        n(&a, "sent")
    );
    assert_eq!(n(&a, "sent") + n(&b, "sent"), 40);
}
