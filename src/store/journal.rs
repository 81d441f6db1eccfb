//! The per-recipient delivery journal.
//!
//! One row per (edition, namespace, recipient), created `pending` when the audience is
//! frozen at the start of a send. The namespace keeps test sends (`test`) apart from the
//! real send (`send`). A row only moves forward on a server's answer:
//! `in_doubt` just before the body is handed over, then `sent`, `deferred`,
//! `bounced` or `expired`; `suppressed` when an address was unsubscribed before its
//! turn. Rows are written by one writer (see `deliver::writer`), many at a time in one
//! transaction (group commit).

use super::{Engine, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sends (
    edition     TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    frozen_at   TEXT,
    finished_at TEXT,
    invalid     INTEGER NOT NULL DEFAULT 0,
    duplicates  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (edition, namespace)
);
CREATE TABLE IF NOT EXISTS journal (
    id               INTEGER PRIMARY KEY,
    edition          TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    address_key      TEXT NOT NULL,
    address          TEXT NOT NULL,
    name             TEXT NOT NULL,
    fields           TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_at TEXT,
    next_attempt_at  TEXT,
    updated_at       TEXT,
    reply            TEXT,
    message_id       TEXT,
    UNIQUE (edition, namespace, address_key)
);
CREATE INDEX IF NOT EXISTS journal_state ON journal (edition, namespace, state);
";

/// The same tables on PostgreSQL, with what several senders of one send share:
/// `claimed_by` (the worker whose batch a pending row is in) and `workers`, one row
/// per sender with its heartbeat (its lease). See `pg_journal.rs`.
pub(super) const PG_SCHEMA: &str = "
CREATE TABLE sends (
    edition     TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    frozen_at   TEXT,
    finished_at TEXT,
    invalid     BIGINT NOT NULL DEFAULT 0,
    duplicates  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (edition, namespace)
);
CREATE TABLE journal (
    id               BIGSERIAL PRIMARY KEY,
    edition          TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    address_key      TEXT NOT NULL,
    address          TEXT NOT NULL,
    name             TEXT NOT NULL,
    fields           TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    first_attempt_at TEXT,
    next_attempt_at  TEXT,
    updated_at       TEXT,
    reply            TEXT,
    message_id       TEXT,
    claimed_by       BIGINT,
    UNIQUE (edition, namespace, address_key)
);
CREATE INDEX journal_state ON journal (edition, namespace, state, id);
CREATE TABLE workers (
    id         BIGSERIAL PRIMARY KEY,
    edition    TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    host       TEXT NOT NULL,
    pid        BIGINT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat  TIMESTAMPTZ NOT NULL DEFAULT now()
);
";

/// The namespace of the real send.
pub const REAL: &str = "send";
/// The namespace of test sends.
pub const TEST: &str = "test";

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    InDoubt,
    Sent,
    Deferred,
    Bounced,
    Expired,
    Suppressed,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Pending,
        State::InDoubt,
        State::Sent,
        State::Deferred,
        State::Bounced,
        State::Expired,
        State::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::InDoubt => "in_doubt",
            State::Sent => "sent",
            State::Deferred => "deferred",
            State::Bounced => "bounced",
            State::Expired => "expired",
            State::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL
            .into_iter()
            .find(|v| v.as_str() == s || v.as_str().replace('_', "-") == s)
    }
}

/// A recipient to freeze into the journal.
#[derive(Debug, Clone)]
pub struct NewRecipient {
    pub address: String,
    pub name: String,
    /// The extra columns as a JSON object (`{"city":"Ghent"}`).
    pub fields: String,
}

/// A recipient due for an attempt.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub address: String,
    pub name: String,
    pub fields: String,
    pub state: State,
    pub attempts: u32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// The address is on the suppression list now.
    pub suppressed: bool,
}

/// A change of state for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub id: i64,
    pub state: State,
    pub at: DateTime<Utc>,
    pub reply: Option<String>,
    pub message_id: Option<String>,
    /// Counts as an attempt (sets `first_attempt_at` on the first one).
    pub attempt: bool,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The claim before a message goes out: if the address is on the suppression
    /// list when this commits, the recipient becomes `suppressed` instead and
    /// [`Store::apply`](super::Store::apply) reports it, so an unsubscribe during a send is honoured.
    pub unless_suppressed: bool,
}

impl Update {
    pub fn new(id: i64, state: State, at: DateTime<Utc>) -> Update {
        Update {
            id,
            state,
            at,
            reply: None,
            message_id: None,
            attempt: false,
            next_attempt_at: None,
            unless_suppressed: false,
        }
    }
}

/// One send of one edition (real or test).
#[derive(Debug, Clone, Serialize)]
pub struct SendInfo {
    pub edition: String,
    pub namespace: String,
    pub started_at: DateTime<Utc>,
    pub frozen: bool,
    pub finished_at: Option<DateTime<Utc>>,
    pub invalid: u64,
    pub duplicates: u64,
}

/// Counts per state, plus what the send header knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: u64,
    pub in_doubt: u64,
    pub sent: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub expired: u64,
    pub suppressed: u64,
    pub invalid: u64,
    pub next_retry: Option<DateTime<Utc>>,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.pending
            + self.in_doubt
            + self.sent
            + self.deferred
            + self.bounced
            + self.expired
            + self.suppressed
    }

    /// Nothing left to try: everyone is sent, bounced, expired or suppressed.
    pub fn complete(&self) -> bool {
        self.pending == 0 && self.in_doubt == 0 && self.deferred == 0
    }

    pub(super) fn add(&mut self, state: State, n: u64) {
        match state {
            State::Pending => self.pending += n,
            State::InDoubt => self.in_doubt += n,
            State::Sent => self.sent += n,
            State::Deferred => self.deferred += n,
            State::Bounced => self.bounced += n,
            State::Expired => self.expired += n,
            State::Suppressed => self.suppressed += n,
        }
    }
}

pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(super) fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn send_info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SendInfo> {
    Ok(SendInfo {
        edition: r.get(0)?,
        namespace: r.get(1)?,
        started_at: parse_ts(r.get(2)?).unwrap_or_default(),
        frozen: r.get::<_, Option<String>>(3)?.is_some(),
        finished_at: parse_ts(r.get(4)?),
        invalid: r.get::<_, i64>(5)? as u64,
        duplicates: r.get::<_, i64>(6)? as u64,
    })
}

pub(super) const SEND_COLUMNS: &str =
    "edition, namespace, started_at, frozen_at, finished_at, invalid, duplicates";

impl Store {
    /// The send record, if this edition/namespace was ever started.
    pub fn send_info(&self, edition: &str, namespace: &str) -> Result<Option<SendInfo>> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.send_info(edition, namespace),
        };
        Ok(db
            .conn
            .prepare_cached(&format!(
                "SELECT {SEND_COLUMNS} FROM sends WHERE edition = ?1 AND namespace = ?2"
            ))?
            .query_row([edition, namespace], send_info_row)
            .optional()?)
    }

    /// Forgets a send entirely (test sends start afresh every time).
    pub fn reset(&self, edition: &str, namespace: &str) -> Result<()> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.reset(edition, namespace),
        };
        let tx = db.conn.unchecked_transaction()?;
        tx.execute(
            "DELETE FROM journal WHERE edition = ?1 AND namespace = ?2",
            [edition, namespace],
        )?;
        tx.execute(
            "DELETE FROM sends WHERE edition = ?1 AND namespace = ?2",
            [edition, namespace],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Creates the send record and freezes the audience as `pending`, committing every
    /// few thousand rows (so a sender on another connection can start at once), and
    /// marks the send frozen at the end. Duplicate addresses (case-insensitive) are
    /// counted, not added; freezing again after an interruption adds only what is
    /// missing.
    pub fn freeze(
        &self,
        edition: &str,
        namespace: &str,
        at: DateTime<Utc>,
        recipients: &mut dyn Iterator<Item = NewRecipient>,
        invalid: &mut dyn FnMut() -> u64,
    ) -> Result<SendInfo> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.freeze(edition, namespace, at, recipients, invalid),
        };
        const CHUNK: usize = 5000;
        db.conn.execute(
            "INSERT OR IGNORE INTO sends (edition, namespace, started_at) VALUES (?1, ?2, ?3)",
            params![edition, namespace, ts(at)],
        )?;
        // Duplicates are what was read less what the journal holds: a freeze resumed
        // after an interruption finds its earlier rows again and must not count them.
        let mut read: u64 = 0;
        let mut recipients = recipients.peekable();
        while recipients.peek().is_some() {
            let tx = db.conn.unchecked_transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO journal (edition, namespace, address_key, address, name, fields, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
                )?;
                for r in recipients.by_ref().take(CHUNK) {
                    insert.execute(params![
                        edition,
                        namespace,
                        super::address_key(&r.address),
                        r.address,
                        r.name,
                        r.fields
                    ])?;
                    read += 1;
                }
            }
            tx.commit()?;
        }
        let held: i64 = db.conn.query_row(
            "SELECT count(*) FROM journal WHERE edition = ?1 AND namespace = ?2",
            params![edition, namespace],
            |r| r.get(0),
        )?;
        let duplicates = read.saturating_sub(held as u64);
        db.conn.execute(
            "UPDATE sends SET frozen_at = ?3, invalid = ?4, duplicates = ?5
             WHERE edition = ?1 AND namespace = ?2",
            params![
                edition,
                namespace,
                ts(at),
                invalid() as i64,
                duplicates as i64
            ],
        )?;
        self.send_info(edition, namespace)?
            .ok_or_else(|| anyhow::anyhow!("the send record vanished"))
    }

    /// Up to `limit` recipients with id > `after` that are due now: pending, deferred
    /// with a next attempt time passed, and (if asked) in doubt. On a shared store
    /// (PostgreSQL) this *claims* them for this sender (see `pg_journal.rs`): use
    /// [`Store::any_due`] to only look. One query per state,
    /// each a range of the `(edition, namespace, state)` index (whose entries are in id
    /// order), so a page costs the same at the start of a list as at its end.
    pub fn due(
        &self,
        edition: &str,
        namespace: &str,
        after: i64,
        now: DateTime<Utc>,
        include_in_doubt: bool,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => {
                return pg.due(edition, namespace, after, now, include_in_doubt, limit)
            }
        };
        const SELECT: &str =
            "SELECT j.id, j.address, j.name, j.fields, j.state, j.attempts, j.first_attempt_at,
                    s.address_key IS NOT NULL
             FROM journal j LEFT JOIN suppressions s ON s.address_key = j.address_key
             WHERE j.edition = ?1 AND j.namespace = ?2 AND j.state = ?3 AND j.id > ?4
               AND (?3 <> 'deferred' OR j.next_attempt_at <= ?5)
             ORDER BY j.id LIMIT ?6";
        let mut states = vec![State::Pending, State::Deferred];
        if include_in_doubt {
            states.push(State::InDoubt);
        }
        let mut page = Vec::new();
        let mut stmt = db.conn.prepare_cached(SELECT)?;
        for state in states {
            let rows = stmt.query_map(
                params![
                    edition,
                    namespace,
                    state.as_str(),
                    after,
                    ts(now),
                    limit as i64
                ],
                |r| {
                    Ok(Entry {
                        id: r.get(0)?,
                        address: r.get(1)?,
                        name: r.get(2)?,
                        fields: r.get(3)?,
                        state,
                        attempts: r.get::<_, i64>(5)? as u32,
                        first_attempt_at: parse_ts(r.get(6)?),
                        suppressed: r.get(7)?,
                    })
                },
            )?;
            for row in rows {
                page.push(row?);
            }
        }
        page.sort_by_key(|e| e.id);
        page.truncate(limit);
        Ok(page)
    }

    /// Brings back retry times a clock that ran ahead left in the future: a deferred
    /// recipient is retried no later than `latest` (now + `retry_max`), and a first
    /// attempt is never later than `now` (so `give_up_after` runs from a real time).
    pub fn clamp_retries(
        &self,
        edition: &str,
        namespace: &str,
        now: DateTime<Utc>,
        latest: DateTime<Utc>,
    ) -> Result<usize> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.clamp_retries(edition, namespace, now, latest),
        };
        let tx = db.conn.unchecked_transaction()?;
        let moved = tx.execute(
            "UPDATE journal SET next_attempt_at = ?3
             WHERE edition = ?1 AND namespace = ?2 AND state = 'deferred' AND next_attempt_at > ?3",
            params![edition, namespace, ts(latest)],
        )?;
        tx.execute(
            "UPDATE journal SET first_attempt_at = ?3
             WHERE edition = ?1 AND namespace = ?2 AND state = 'deferred' AND first_attempt_at > ?3",
            params![edition, namespace, ts(now)],
        )?;
        tx.commit()?;
        Ok(moved)
    }

    /// Applies changes in one transaction. Returns the ids of `unless_suppressed`
    /// claims that found the address suppressed (those recipients are now `suppressed`).
    pub fn apply(&self, updates: &[Update]) -> Result<Vec<i64>> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.apply(updates),
        };
        let mut suppressed = Vec::new();
        if updates.is_empty() {
            return Ok(suppressed);
        }
        let tx = db.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE journal SET state = ?2, updated_at = ?3,
                    reply = coalesce(?4, reply), message_id = coalesce(?5, message_id),
                    attempts = attempts + ?6,
                    first_attempt_at = CASE WHEN ?6 = 1 THEN coalesce(first_attempt_at, ?3)
                                            ELSE first_attempt_at END,
                    next_attempt_at = ?7
                 WHERE id = ?1",
            )?;
            let mut refuse = tx.prepare_cached(
                "UPDATE journal SET state = 'suppressed', updated_at = ?2
                 WHERE id = ?1 AND address_key IN (SELECT address_key FROM suppressions)",
            )?;
            for u in updates {
                if u.unless_suppressed && refuse.execute(params![u.id, ts(u.at)])? == 1 {
                    suppressed.push(u.id);
                    continue;
                }
                stmt.execute(params![
                    u.id,
                    u.state.as_str(),
                    ts(u.at),
                    u.reply,
                    u.message_id,
                    i64::from(u.attempt),
                    u.next_attempt_at.map(ts)
                ])?;
            }
        }
        let step = Store::count_step(&tx)?;
        tx.commit()?;
        db.progress.set(step);
        Ok(suppressed)
    }

    pub fn counts(&self, edition: &str, namespace: &str) -> Result<Counts> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.counts(edition, namespace),
        };
        let mut c = Counts::default();
        let mut stmt = db.conn.prepare_cached(
            "SELECT state, count(*) FROM journal WHERE edition = ?1 AND namespace = ?2 GROUP BY state",
        )?;
        let rows = stmt.query_map([edition, namespace], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            if let Some(s) = State::parse(&state) {
                c.add(s, n as u64);
            }
        }
        c.next_retry = parse_ts(
            db.conn
                .prepare_cached(
                    "SELECT min(next_attempt_at) FROM journal
                     WHERE edition = ?1 AND namespace = ?2 AND state = 'deferred'",
                )?
                .query_row([edition, namespace], |r| r.get(0))?,
        );
        if let Some(info) = self.send_info(edition, namespace)? {
            c.invalid = info.invalid;
        }
        Ok(c)
    }

    /// Marks the send finished (all recipients settled) at `at`.
    pub fn finish(&self, edition: &str, namespace: &str, at: DateTime<Utc>) -> Result<()> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.finish(edition, namespace, at),
        };
        db.conn.execute(
            "UPDATE sends SET finished_at = coalesce(finished_at, ?3) WHERE edition = ?1 AND namespace = ?2",
            params![edition, namespace, ts(at)],
        )?;
        Ok(())
    }

    /// Every send in the journal, oldest first.
    pub fn sends(&self) -> Result<Vec<SendInfo>> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.sends(),
        };
        let mut stmt = db.conn.prepare(&format!(
            "SELECT {SEND_COLUMNS} FROM sends ORDER BY started_at, edition, namespace"
        ))?;
        let rows = stmt.query_map([], send_info_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether any recipient is due now (pending, or deferred with its retry time
    /// passed), without claiming it: a look that changes nothing, on either engine.
    pub fn any_due(&self, edition: &str, namespace: &str, now: DateTime<Utc>) -> Result<bool> {
        let (e, n, now) = (edition.to_string(), namespace.to_string(), ts(now));
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT 1 FROM journal WHERE edition = ?1 AND namespace = ?2
                       AND (state = 'pending' OR (state = 'deferred' AND next_attempt_at <= ?3))
                     LIMIT 1",
                )?
                .query_row(params![e, n, now], |r| r.get::<_, i64>(0))
                .optional()?
                .is_some(),
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT 1 FROM journal WHERE edition = $1 AND namespace = $2
                       AND (state = 'pending' OR (state = 'deferred' AND next_attempt_at <= $3))
                     LIMIT 1",
                    super::pg::pg_params![e, n, now],
                )?
                .is_some(),
        })
    }

    /// With a shared store: the lowest id above `after` of the recipients of this send
    /// that other live senders still hold (which come back if they die, so this sender
    /// must not stop yet), if any.
    pub fn first_held_by_others(
        &self,
        edition: &str,
        namespace: &str,
        after: i64,
    ) -> Result<Option<i64>> {
        match &self.engine {
            Engine::Sqlite(_) => Ok(None),
            Engine::Pg(pg) => pg.first_held_by_others(edition, namespace, after),
        }
    }

    /// With a shared store, once this process claimed: a handle that claims the next
    /// batches from any thread, apart from the journal writer's commits.
    pub fn claimer(&self) -> Option<super::Claimer> {
        match &self.engine {
            Engine::Sqlite(_) => None,
            Engine::Pg(pg) => pg.claimer(),
        }
    }

    /// With a shared store, once this process claimed: how many senders share the
    /// send (kept up to date by the heartbeat).
    pub fn live_senders(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
        match &self.engine {
            Engine::Sqlite(_) => None,
            Engine::Pg(pg) => pg.live_workers(),
        }
    }

    /// With a shared store: how many live senders are on this send now (0 on SQLite,
    /// whose lock file says it instead).
    pub fn senders_on(&self, edition: &str, namespace: &str) -> Result<usize> {
        match &self.engine {
            Engine::Sqlite(_) => Ok(0),
            Engine::Pg(pg) => pg.senders_on(edition, namespace),
        }
    }

    /// With a shared store: leaves the send, handing back unsent claims at once.
    /// Returns how many other senders are still on it (0 on SQLite).
    pub fn leave_send(&self) -> Result<usize> {
        match &self.engine {
            Engine::Sqlite(_) => Ok(0),
            Engine::Pg(pg) => pg.leave(),
        }
    }

    /// Addresses in one state, with their last reply.
    pub fn recipients(
        &self,
        edition: &str,
        namespace: &str,
        state: State,
    ) -> Result<Vec<(String, Option<String>)>> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.recipients(edition, namespace, state),
        };
        let mut stmt = db.conn.prepare(
            "SELECT address, reply FROM journal WHERE edition = ?1 AND namespace = ?2 AND state = ?3 ORDER BY id",
        )?;
        let rows = stmt.query_map([edition, namespace, state.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Suppression, SuppressionSource};

    fn rcpt(a: &str) -> NewRecipient {
        NewRecipient {
            address: a.into(),
            name: String::new(),
            fields: "{}".into(),
        }
    }

    #[test]
    fn freeze_dedupes_and_due_follows_states() {
        let s = Store::in_memory().unwrap();
        let t0 = crate::clock::now();
        let info = s
            .freeze(
                "e1",
                REAL,
                t0,
                &mut ["A@x.org", "b@x.org", "a@X.org", "c@x.org"]
                    .into_iter()
                    .map(rcpt),
                &mut || 2,
            )
            .unwrap();
        assert!(info.frozen);
        assert_eq!((info.duplicates, info.invalid), (1, 2));
        let due = s.due("e1", REAL, 0, t0, false, 10).unwrap();
        assert_eq!(due.len(), 3);
        assert_eq!(due[0].address, "A@x.org");
        let later = t0 + chrono::Duration::minutes(5);
        let mut deferred = Update::new(due[1].id, State::Deferred, t0);
        deferred.attempt = true;
        deferred.next_attempt_at = Some(later);
        s.apply(&[
            Update::new(due[0].id, State::InDoubt, t0),
            deferred,
            Update::new(due[2].id, State::Sent, t0),
        ])
        .unwrap();
        assert!(s.due("e1", REAL, 0, t0, false, 10).unwrap().is_empty());
        assert_eq!(s.due("e1", REAL, 0, later, false, 10).unwrap().len(), 1);
        let with_doubt = s.due("e1", REAL, 0, later, true, 10).unwrap();
        assert_eq!(with_doubt.len(), 2);
        assert_eq!(with_doubt[1].attempts, 1);
        let c = s.counts("e1", REAL).unwrap();
        assert_eq!((c.sent, c.deferred, c.in_doubt, c.invalid), (1, 1, 1, 2));
        assert_eq!(c.next_retry.unwrap().timestamp(), later.timestamp());
        assert!(s.counts("e1", TEST).unwrap().total() == 0);
        s.reset("e1", REAL).unwrap();
        assert!(s.send_info("e1", REAL).unwrap().is_none());
    }

    #[test]
    fn due_reports_suppression() {
        let s = Store::in_memory().unwrap();
        s.freeze(
            "e",
            REAL,
            crate::clock::now(),
            &mut ["a@x.org"].into_iter().map(rcpt),
            &mut || 0,
        )
        .unwrap();
        s.suppress(&Suppression {
            address: "A@x.org".into(),
            suppressed_at: crate::clock::now(),
            source: SuppressionSource::Manual,
            edition: None,
        })
        .unwrap();
        assert!(s.due("e", REAL, 0, crate::clock::now(), false, 5).unwrap()[0].suppressed);
    }

    #[test]
    fn a_claim_for_a_suppressed_address_becomes_suppressed() {
        let s = Store::in_memory().unwrap();
        s.freeze(
            "e",
            REAL,
            crate::clock::now(),
            &mut ["a@x.org", "b@x.org"].into_iter().map(rcpt),
            &mut || 0,
        )
        .unwrap();
        let due = s.due("e", REAL, 0, crate::clock::now(), false, 5).unwrap();
        // Unsubscribed after the page was read, before the claim commits.
        s.suppress(&Suppression {
            address: "A@X.org".into(),
            suppressed_at: crate::clock::now(),
            source: SuppressionSource::OneClick,
            edition: Some("e".into()),
        })
        .unwrap();
        let claims: Vec<Update> = due
            .iter()
            .map(|e| {
                let mut u = Update::new(e.id, State::InDoubt, crate::clock::now());
                u.unless_suppressed = true;
                u
            })
            .collect();
        assert_eq!(s.apply(&claims).unwrap(), vec![due[0].id]);
        let c = s.counts("e", REAL).unwrap();
        assert_eq!((c.suppressed, c.in_doubt), (1, 1));
    }
}
