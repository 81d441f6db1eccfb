//! The PostgreSQL journal's layout from schema version 5: nothing a send changes in a
//! row is indexed, so the claim, the in-doubt mark and the outcome are HOT updates;
//! the Message-IDs live in `journal_message_ids`; a claim reads the edition's rows in
//! id order. Checked on the private cluster, with real sends into smtp-sink.

use crate::harness::*;
use crate::pg::{on_postgres, stderr};

/// Turns the journal of a new store back into the layout of schema version 4.
pub(crate) const VERSION_4_LAYOUT: &str = "
DROP TABLE journal_message_ids;
DROP INDEX journal_order, journal_address, journal_retry;
ALTER TABLE journal RESET (fillfactor);
CREATE INDEX journal_state ON journal (edition, namespace, state, id);
CREATE INDEX journal_tried_address ON journal (address_key) WHERE state <> 'pending';
CREATE INDEX journal_message_id ON journal (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX journal_sent_address ON journal (address_key, updated_at)
    WHERE message_id IS NOT NULL;";

/// The journal's indexes, by name and definition.
fn journal_indexes(url: &str) -> String {
    postgres().sql(
        url,
        "SELECT string_agg(indexname || ': ' || indexdef, E'\\n' ORDER BY indexname)
         FROM pg_indexes WHERE tablename IN ('journal', 'journal_message_ids')",
    )
}

#[test]
fn a_send_on_postgresql_updates_the_journal_rows_in_place() {
    let db = postgres().database();
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(300, Some(sink.port), "concurrency = 4");
    on_postgres(&nl, &db);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(sink.counts().len(), 300);
    // Three updates per reader (claim, mark, outcome). With `state` in an index, a
    // change of state could never stay on its page: at most the claims were HOT.
    let (updates, hot): (u64, u64) = {
        let row = postgres().sql(
            &db,
            "SELECT n_tup_upd || ' ' || n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'journal'",
        );
        let mut it = row.split(' ').map(|n| n.parse().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    assert!(updates >= 900, "{updates} updates");
    assert!(
        hot * 3 >= updates * 2,
        "{hot} of {updates} updates were HOT"
    );
    // Every message sent can be found by its Message-ID.
    assert_eq!(
        postgres().sql(
            &db,
            "SELECT count(*) FROM journal j JOIN journal_message_ids m
               ON m.journal_id = j.id AND m.message_id = j.message_id
             WHERE j.state = 'sent'"
        ),
        "300"
    );
}

/// A store that brief wrote at version 4 gets the new layout on first use, the same
/// as a new store's, with the Message-IDs of its earlier sends.
#[test]
fn a_store_of_schema_version_4_gets_the_new_layout_and_keeps_its_message_ids() {
    let fresh = postgres().database();
    let nl = Newsletter::generated(0, None);
    on_postgres(&nl, &fresh);
    assert_eq!(code(&nl.run(&["unsubscribe", "x@example.org"])), Some(0));

    let db = postgres().database();
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(5, Some(sink.port), "concurrency = 2");
    on_postgres(&nl, &db);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    postgres().sql(&db, VERSION_4_LAYOUT);
    postgres().sql(&db, "UPDATE brief_schema SET version = 4");
    assert_eq!(code(&nl.run(&["unsubscribe", "x@example.org"])), Some(0));
    assert_eq!(postgres().sql(&db, "SELECT version FROM brief_schema"), "5");
    assert_eq!(journal_indexes(&db), journal_indexes(&fresh));
    assert_eq!(
        postgres().sql(
            &db,
            "SELECT reloptions::text FROM pg_class WHERE relname = 'journal'"
        ),
        postgres().sql(
            &fresh,
            "SELECT reloptions::text FROM pg_class WHERE relname = 'journal'"
        )
    );
    assert_eq!(
        postgres().sql(
            &db,
            "SELECT count(*) FROM journal j JOIN journal_message_ids m ON m.journal_id = j.id
             WHERE m.message_id = j.message_id"
        ),
        "5",
        "the earlier send's Message-IDs"
    );
}

/// `--resend-in-doubt` on a send that still has pending readers: the in-doubt rows
/// before, among and after them are all claimed, each reader once.
#[test]
fn resend_in_doubt_takes_the_in_doubt_rows_wherever_they_are_among_the_pending_ones() {
    let db = postgres().database();
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(40, Some(sink.port), "concurrency = 1");
    on_postgres(&nl, &db);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    // As a sender that died would leave it: rows 5, 6, 25 and 40 in doubt, the
    // others from row 20 on not sent yet.
    postgres().sql(
        &db,
        "WITH r AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM journal)
         UPDATE journal j SET
             state = CASE WHEN r.n IN (5, 6, 25, 40) THEN 'in_doubt' ELSE 'pending' END,
             claimed_by = NULL
         FROM r WHERE r.id = j.id AND (r.n IN (5, 6, 25, 40) OR r.n >= 20)",
    );
    let again = Server::smtp_sink(&[]);
    let port = sink.port.to_string();
    let toml = std::fs::read_to_string(nl.root().join("brief.toml")).unwrap();
    std::fs::write(
        nl.root().join("brief.toml"),
        toml.replace(&format!("port = {port}"), &format!("port = {}", again.port)),
    )
    .unwrap();
    let out = nl.run(&["send", "--edition", "e1", "--resend-in-doubt"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let expected: Vec<String> = nl
        .readers
        .iter()
        .enumerate()
        .filter(|(i, _)| [5, 6].contains(&(i + 1)) || i + 1 >= 20)
        .map(|(_, r)| r.to_lowercase())
        .collect();
    let got = again.counts();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), {
        let mut e = expected.clone();
        e.sort();
        e
    });
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    let s = nl.status(false);
    assert_eq!(n(&s, "sent"), 40, "{s}");
}

/// On a large journal a generic plan's estimate can pass `jit_above_cost`, and then
/// compiling a claim takes longer than running it (about 250 ms on a million rows,
/// for a claim that runs in 0.1 ms): brief's sessions run without JIT. The server
/// here compiles every statement (`jit_above_cost = 0`) and logs each plan, with
/// what it compiled, of the sessions on this database.
#[test]
fn no_statement_of_brief_is_compiled_by_jit() {
    let cluster = Postgres::start();
    let db = cluster.database();
    let name = db.rsplit('/').next().unwrap();
    cluster.sql(
        &db,
        &format!(
            "ALTER DATABASE {name} SET session_preload_libraries = 'auto_explain';
             ALTER DATABASE {name} SET auto_explain.log_min_duration = 0;
             ALTER DATABASE {name} SET jit_above_cost = 0"
        ),
    );
    let sink = Server::smtp_sink(&[]);
    let nl = Newsletter::generated_with(20, Some(sink.port), "concurrency = 2");
    on_postgres(&nl, &db);
    let out = nl.run(&["send", "--edition", "e1"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(sink.counts().len(), 20);
    let log = cluster.log();
    assert!(
        log.contains("UPDATE journal j SET claimed_by"),
        "the claims' plans were not logged: the test proves nothing\n{log}"
    );
    let compiled = log.matches("JIT:").count();
    assert_eq!(compiled, 0, "{compiled} plans compiled by JIT:\n{log}");
}
