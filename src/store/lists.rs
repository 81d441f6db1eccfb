//! Managed lists: readers who signed up (or were added by the editors) and the lists
//! they are on, the consent behind each addition, the signups still waiting for a
//! confirmation, the mails sent for signups, and erasure ("delete my data").
//!
//! Only confirmed readers are in `readers`: a signup waits in `pending_signups` (which
//! only counts and bounds them; the confirmation link itself carries what was asked)
//! until its link is opened. Confirmation belongs to the reader, not to a list, so
//! adding a list later keeps them confirmed.

use super::pg::Param;
use super::{address_key, Engine, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS readers (
    address_key  TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    name         TEXT NOT NULL,
    fields       TEXT NOT NULL,
    confirmed_at TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    list        TEXT NOT NULL,
    address_key TEXT NOT NULL,
    added_at    TEXT NOT NULL,
    PRIMARY KEY (list, address_key)
);
CREATE TABLE IF NOT EXISTS consents (
    address_key TEXT NOT NULL,
    at          TEXT NOT NULL,
    form        TEXT NOT NULL,
    lists       TEXT NOT NULL,
    text        TEXT NOT NULL,
    PRIMARY KEY (address_key, at, form)
);
CREATE TABLE IF NOT EXISTS pending_signups (
    nonce       TEXT PRIMARY KEY,
    address_key TEXT NOT NULL,
    client      TEXT NOT NULL,
    lists       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_by_address ON pending_signups (address_key);
CREATE INDEX IF NOT EXISTS pending_by_client ON pending_signups (client);
CREATE TABLE IF NOT EXISTS signup_mails (
    tag         TEXT PRIMARY KEY,
    address_key TEXT NOT NULL,
    address     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    reply       TEXT
);
CREATE TABLE IF NOT EXISTS spent_challenges (
    challenge  TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signup_stats (
    id       BIGINT PRIMARY KEY,
    answered BIGINT NOT NULL,
    last_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signup_mails_by_address ON signup_mails (address_key);
";

pub(super) const PG_SCHEMA: &str = "
CREATE TABLE readers (
    address_key  TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    name         TEXT NOT NULL,
    fields       TEXT NOT NULL,
    confirmed_at TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE TABLE memberships (
    list        TEXT NOT NULL,
    address_key TEXT NOT NULL,
    added_at    TEXT NOT NULL,
    PRIMARY KEY (list, address_key)
);
CREATE TABLE consents (
    address_key TEXT NOT NULL,
    at          TEXT NOT NULL,
    form        TEXT NOT NULL,
    lists       TEXT NOT NULL,
    text        TEXT NOT NULL,
    PRIMARY KEY (address_key, at, form)
);
CREATE TABLE pending_signups (
    nonce       TEXT PRIMARY KEY,
    address_key TEXT NOT NULL,
    client      TEXT NOT NULL,
    lists       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX pending_by_address ON pending_signups (address_key);
CREATE INDEX pending_by_client ON pending_signups (client);
CREATE TABLE signup_mails (
    tag         TEXT PRIMARY KEY,
    address_key TEXT NOT NULL,
    address     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    reply       TEXT
);
CREATE TABLE spent_challenges (
    challenge  TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE TABLE signup_stats (
    id       BIGINT PRIMARY KEY,
    answered BIGINT NOT NULL,
    last_at  TEXT NOT NULL
);
CREATE INDEX signup_mails_by_address ON signup_mails (address_key);
";

/// A reader as a managed list holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reader {
    pub address: String,
    pub name: String,
    /// Extra fields (`subscriber.<key>` in templates) as a JSON object.
    pub fields: String,
    pub confirmed_at: DateTime<Utc>,
    /// The managed lists they are on, by name.
    pub lists: Vec<String>,
}

/// What a reader agreed to, when, through what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consent {
    pub at: DateTime<Utc>,
    /// `signup form`, `api`, `preferences`, `import`, `cli`.
    pub form: String,
    pub lists: Vec<String>,
    pub text: String,
}

/// A confirmed addition to managed lists.
#[derive(Debug, Clone)]
pub struct Addition<'a> {
    pub address: &'a str,
    /// `None` keeps the name a known reader has.
    pub name: Option<&'a str>,
    pub fields: Option<&'a str>,
    pub lists: &'a [String],
    pub consent: Consent,
}

/// A signup mail (confirmation or welcome) as the store records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignupMail {
    /// Unique per mail; the Message-ID is made from it.
    pub tag: String,
    pub address: String,
    /// `confirm` or `welcome`.
    pub kind: String,
    /// `pending` (recorded before it goes out), `sending`, `sent` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub reply: Option<String>,
    #[serde(skip)]
    pub subject: String,
    /// Not in "download my data": a confirmation mail's body holds a live link.
    #[serde(skip)]
    pub body: String,
}

/// A recipient's message in the journal, for "download my data".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub edition: String,
    pub namespace: String,
    pub state: String,
    pub first_attempt_at: Option<String>,
    pub updated_at: Option<String>,
    pub message_id: Option<String>,
}

/// Confirmed and pending counts of one managed list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListCounts {
    pub confirmed: u64,
    pub pending: u64,
}

/// The only thing kept of an erased reader: enough to recognise the address again on
/// a stale CSV, not enough to read it back (short of guessing it).
pub fn erased_key(email: &str) -> String {
    let digest = Sha256::digest(format!("brief/erased\0{}", address_key(email)).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc))
}

fn split_lists(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A value bound to, or read from, a statement of this file: text (or NULL), or a
/// 64-bit integer. Every statement here is written once in SQL both engines run
/// (positional parameters, `ON CONFLICT`, RFC 3339 text times, casts where
/// PostgreSQL must know a parameter's type); [`Store::run`] and [`Store::rows`] bind
/// it on the engine at hand, `?N` becoming `$N` for PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
enum V {
    T(Option<String>),
    I(i64),
}

/// The kind of a column a query reads.
#[derive(Debug, Clone, Copy)]
enum K {
    T,
    I,
}

fn t(s: impl Into<String>) -> V {
    V::T(Some(s.into()))
}

impl V {
    fn text(&self) -> String {
        match self {
            V::T(Some(s)) => s.clone(),
            V::T(None) => String::new(),
            V::I(i) => i.to_string(),
        }
    }

    fn opt(&self) -> Option<String> {
        match self {
            V::T(s) => s.clone(),
            V::I(i) => Some(i.to_string()),
        }
    }

    fn int(&self) -> i64 {
        match self {
            V::I(i) => *i,
            V::T(s) => s.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0),
        }
    }
}

/// `?1` → `$1`: the same statement in PostgreSQL's parameter syntax.
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn sqlite_value(v: &V) -> rusqlite::types::Value {
    match v {
        V::T(Some(s)) => rusqlite::types::Value::Text(s.clone()),
        V::T(None) => rusqlite::types::Value::Null,
        V::I(i) => rusqlite::types::Value::Integer(*i),
    }
}

fn pg_args(args: &[V]) -> Vec<Param> {
    args.iter()
        .map(|v| match v {
            V::T(s) => Box::new(s.clone()) as Param,
            V::I(i) => Box::new(*i) as Param,
        })
        .collect()
}

impl Store {
    /// The store at `location` for reading, or `None` when there is none yet (a send's
    /// managed lists are read on their own connection, like a CSV file is opened).
    pub fn existing(location: &super::Location) -> Result<Option<Store>> {
        match location {
            super::Location::Sqlite(path) => Store::open_existing(path),
            super::Location::Postgres { url, password } => {
                Ok(
                    super::pg::Pg::open_existing(url, password.as_deref())?.map(|pg| Store {
                        engine: Engine::Pg(pg),
                    }),
                )
            }
        }
    }

    /// Runs a statement of this file; the number of rows changed.
    fn run(&self, sql: &str, args: &[V]) -> Result<u64> {
        match &self.engine {
            Engine::Sqlite(db) => Ok(db
                .conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(args.iter().map(sqlite_value)))?
                as u64),
            Engine::Pg(pg) => pg.execute(&pg_sql(sql), pg_args(args)),
        }
    }

    /// Runs a query of this file; its rows, each column read as `kinds` says.
    fn rows(&self, sql: &str, args: &[V], kinds: &[K]) -> Result<Vec<Vec<V>>> {
        match &self.engine {
            Engine::Sqlite(db) => {
                let mut stmt = db.conn.prepare_cached(sql)?;
                let rows = stmt.query_map(
                    rusqlite::params_from_iter(args.iter().map(sqlite_value)),
                    |r| {
                        kinds
                            .iter()
                            .enumerate()
                            .map(|(i, k)| {
                                Ok(match k {
                                    K::T => V::T(r.get(i)?),
                                    K::I => V::I(r.get(i)?),
                                })
                            })
                            .collect::<rusqlite::Result<Vec<V>>>()
                    },
                )?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
            Engine::Pg(pg) => Ok(pg
                .query(&pg_sql(sql), pg_args(args))?
                .iter()
                .map(|r| {
                    kinds
                        .iter()
                        .enumerate()
                        .map(|(i, k)| match k {
                            K::T => V::T(r.get(i)),
                            K::I => V::I(r.get(i)),
                        })
                        .collect()
                })
                .collect()),
        }
    }

    fn count(&self, sql: &str, args: &[V]) -> Result<u64> {
        Ok(self
            .rows(sql, args, &[K::I])?
            .first()
            .map_or(0, |r| r[0].int().max(0) as u64))
    }

    /// Whether this store has the managed-list tables (a read-only SQLite store
    /// written by an older brief may not; PostgreSQL's schema is migrated on open).
    pub fn manages_lists(&self) -> bool {
        match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'memberships'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .is_ok_and(|n| n == 1),
            Engine::Pg(_) => true,
        }
    }

    /// Adds a reader to `lists` (confirmed), with the consent record. A reader already
    /// confirmed stays confirmed (their first confirmation time is kept).
    pub fn add_reader(&self, a: &Addition<'_>) -> Result<()> {
        let key = address_key(a.address);
        let now = ts(a.consent.at);
        self.run(
            "INSERT INTO readers (address_key, address, name, fields, confirmed_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (address_key) DO UPDATE SET
                 address = excluded.address,
                 name = CASE WHEN CAST(?6 AS BIGINT) = 1 THEN excluded.name ELSE readers.name END,
                 fields = CASE WHEN CAST(?7 AS BIGINT) = 1 THEN excluded.fields ELSE readers.fields END,
                 updated_at = excluded.updated_at",
            &[
                t(key.clone()),
                t(a.address.trim()),
                t(a.name.unwrap_or("")),
                t(a.fields.unwrap_or("{}")),
                t(now.clone()),
                V::I(i64::from(a.name.is_some())),
                V::I(i64::from(a.fields.is_some())),
            ],
        )?;
        for list in a.lists {
            self.run(
                "INSERT INTO memberships (list, address_key, added_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (list, address_key) DO NOTHING",
                &[t(list.clone()), t(key.clone()), t(now.clone())],
            )?;
        }
        self.record_consent(a.address, &a.consent)
    }

    /// Records a consent (also for a change made in the preference centre).
    pub fn record_consent(&self, email: &str, c: &Consent) -> Result<()> {
        self.run(
            "INSERT INTO consents (address_key, at, form, lists, text) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (address_key, at, form) DO NOTHING",
            &[
                t(address_key(email)),
                t(ts(c.at)),
                t(c.form.clone()),
                t(c.lists.join(",")),
                t(c.text.clone()),
            ],
        )?;
        Ok(())
    }

    /// Takes a reader off `list`; returns false if they were not on it.
    pub fn remove_membership(&self, email: &str, list: &str) -> Result<bool> {
        let changed = self.run(
            "DELETE FROM memberships WHERE list = ?1 AND address_key = ?2",
            &[t(list), t(address_key(email))],
        )?;
        Ok(changed == 1)
    }

    /// Renames a confirmed reader.
    pub fn rename_reader(&self, email: &str, name: &str, at: DateTime<Utc>) -> Result<()> {
        self.run(
            "UPDATE readers SET name = ?2, updated_at = ?3 WHERE address_key = ?1",
            &[t(address_key(email)), t(name), t(ts(at))],
        )?;
        Ok(())
    }

    /// A confirmed reader and their lists.
    pub fn reader(&self, email: &str) -> Result<Option<Reader>> {
        let key = address_key(email);
        let found = self.rows(
            "SELECT address, name, fields, confirmed_at FROM readers WHERE address_key = ?1",
            &[t(key.clone())],
            &[K::T, K::T, K::T, K::T],
        )?;
        let Some(row) = found.first() else {
            return Ok(None);
        };
        let lists = self
            .rows(
                "SELECT list FROM memberships WHERE address_key = ?1 ORDER BY list",
                &[t(key)],
                &[K::T],
            )?
            .iter()
            .map(|r| r[0].text())
            .collect();
        Ok(Some(Reader {
            address: row[0].text(),
            name: row[1].text(),
            fields: row[2].text(),
            confirmed_at: parse_ts(&row[3].text())?,
            lists,
        }))
    }

    /// Up to `limit` members of `list` whose address key sorts after `after`, in key
    /// order (address, name, fields JSON, key): a page of a managed list.
    pub fn members_after(
        &self,
        list: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, String, String, String)>> {
        Ok(self
            .rows(
                "SELECT r.address, r.name, r.fields, r.address_key
                 FROM memberships m JOIN readers r ON r.address_key = m.address_key
                 WHERE m.list = ?1 AND m.address_key > ?2
                 ORDER BY m.address_key LIMIT ?3",
                &[t(list), t(after), V::I(limit as i64)],
                &[K::T, K::T, K::T, K::T],
            )?
            .iter()
            .map(|r| (r[0].text(), r[1].text(), r[2].text(), r[3].text()))
            .collect())
    }

    /// The extra field names of `list`'s members (the union, sorted).
    pub fn member_columns(&self, list: &str) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        for row in self.rows(
            "SELECT DISTINCT r.fields FROM memberships m JOIN readers r ON r.address_key = m.address_key
             WHERE m.list = ?1 AND r.fields <> '{}'",
            &[t(list)],
            &[K::T],
        )? {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&row[0].text()) {
                names.extend(map.keys().cloned());
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Every reader of `list` (or of any managed list), by address key.
    pub fn readers(&self, list: Option<&str>) -> Result<Vec<Reader>> {
        let keys = self.rows(
            "SELECT address_key FROM readers r WHERE CAST(?1 AS TEXT) IS NULL
                OR EXISTS (SELECT 1 FROM memberships m WHERE m.address_key = r.address_key AND m.list = ?1)
             ORDER BY address_key",
            &[V::T(list.map(str::to_string))],
            &[K::T],
        )?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.extend(self.reader(&key[0].text())?);
        }
        Ok(out)
    }

    /// Confirmed members and unexpired pending signups of `list` at `now`.
    pub fn list_counts(&self, list: &str, now: DateTime<Utc>) -> Result<ListCounts> {
        let confirmed = self.count(
            "SELECT count(*) FROM memberships WHERE list = ?1",
            &[t(list)],
        )?;
        let pending = self
            .rows(
                "SELECT lists FROM pending_signups WHERE expires_at > ?1",
                &[t(ts(now))],
                &[K::T],
            )?
            .iter()
            .filter(|r| split_lists(&r[0].text()).iter().any(|l| l == list))
            .count() as u64;
        Ok(ListCounts { confirmed, pending })
    }

    /// Unexpired pending signups for `email`, and started by `client`, at `now`.
    pub fn pending_counts(
        &self,
        email: &str,
        client: &str,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64)> {
        let now = ts(now);
        Ok((
            self.count(
                "SELECT count(*) FROM pending_signups WHERE address_key = ?1 AND expires_at > ?2",
                &[t(address_key(email)), t(now.clone())],
            )?,
            self.count(
                "SELECT count(*) FROM pending_signups WHERE client = ?1 AND expires_at > ?2",
                &[t(client), t(now)],
            )?,
        ))
    }

    /// Records a signup waiting for its confirmation (and forgets expired ones).
    pub fn add_pending(
        &self,
        nonce: &str,
        email: &str,
        client: &str,
        lists: &[String],
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<()> {
        self.run(
            "DELETE FROM pending_signups WHERE expires_at <= ?1",
            &[t(ts(now))],
        )?;
        self.run(
            "INSERT INTO pending_signups (nonce, address_key, client, lists, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (nonce) DO NOTHING",
            &[
                t(nonce),
                t(address_key(email)),
                t(client),
                t(lists.join(",")),
                t(ts(now)),
                t(ts(expires)),
            ],
        )?;
        Ok(())
    }

    /// Takes a pending signup to confirm it: true the first time, false once it was
    /// confirmed, or erased with the reader's data.
    /// Whether the signup of `nonce` still waits for its confirmation.
    pub fn has_pending(&self, nonce: &str) -> Result<bool> {
        Ok(self.count(
            "SELECT count(*) FROM pending_signups WHERE nonce = ?1",
            &[t(nonce)],
        )? > 0)
    }

    pub fn take_pending(&self, nonce: &str) -> Result<bool> {
        let taken = self.run("DELETE FROM pending_signups WHERE nonce = ?1", &[t(nonce)])?;
        Ok(taken == 1)
    }

    /// Spends a proof-of-work challenge: true the first time, false if it was used
    /// already (a solved challenge answers once). Forgets expired ones.
    pub fn spend_challenge(
        &self,
        challenge: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.run(
            "DELETE FROM spent_challenges WHERE expires_at <= ?1",
            &[t(ts(now))],
        )?;
        let changed = self.run(
            "INSERT INTO spent_challenges (challenge, expires_at) VALUES (?1, ?2)
             ON CONFLICT (challenge) DO NOTHING",
            &[t(challenge), t(ts(expires))],
        )?;
        Ok(changed == 1)
    }

    /// Counts one answered signup. Every signup's transaction writes (and commits to
    /// disk) this at least, whether or not it also records a confirmation, so the
    /// answer takes as long for an address that gets no mail.
    pub fn count_signup(&self, now: DateTime<Utc>) -> Result<()> {
        self.run(
            "INSERT INTO signup_stats (id, answered, last_at) VALUES (1, 1, ?1)
             ON CONFLICT (id) DO UPDATE SET answered = signup_stats.answered + 1, last_at = excluded.last_at",
            &[t(ts(now))],
        )?;
        Ok(())
    }

    /// Records a signup mail to send (`pending`), in the caller's transaction.
    pub fn queue_signup_mail(
        &self,
        tag: &str,
        email: &str,
        kind: &str,
        subject: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.run(
            "INSERT INTO signup_mails (tag, address_key, address, kind, subject, body, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7) ON CONFLICT (tag) DO NOTHING",
            &[
                t(tag),
                t(address_key(email)),
                t(email.trim()),
                t(kind),
                t(subject),
                t(body),
                t(ts(at)),
            ],
        )?;
        Ok(())
    }

    /// Signup mails due at `now`: pending ones, failed ones after a back-off that
    /// doubles with each attempt (from a minute), fewer than `max_attempts` tries;
    /// and ones left `sending` for an hour (a server that stopped mid-way).
    pub fn due_signup_mails(
        &self,
        now: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<Vec<SignupMail>> {
        let rows = self.rows(
            "SELECT tag, address, kind, state, attempts, created_at, updated_at, reply, subject, body
             FROM signup_mails WHERE state IN ('pending', 'failed', 'sending') AND attempts < ?1
             ORDER BY created_at LIMIT 100",
            &[V::I(i64::from(max_attempts))],
            &[K::T, K::T, K::T, K::T, K::I, K::T, K::T, K::T, K::T, K::T],
        )?;
        let mut out = Vec::new();
        for r in rows {
            let mail = mail_from(&r)?;
            let wait = match mail.state.as_str() {
                "pending" => chrono::Duration::zero(),
                "sending" => chrono::Duration::hours(1),
                _ => chrono::Duration::minutes(1i64 << mail.attempts.min(12)),
            };
            if mail.updated_at + wait <= now {
                out.push(mail);
            }
        }
        Ok(out)
    }

    /// Claims a due mail for this process (another `brief serve` on the same store
    /// may be looking at it too): true if this one got it.
    pub fn claim_signup_mail(&self, mail: &SignupMail, now: DateTime<Utc>) -> Result<bool> {
        let changed = self.run(
            "UPDATE signup_mails SET state = 'sending', attempts = attempts + 1, updated_at = ?3
             WHERE tag = ?1 AND state = ?2 AND attempts = ?4",
            &[
                t(mail.tag.clone()),
                t(mail.state.clone()),
                t(ts(now)),
                V::I(i64::from(mail.attempts)),
            ],
        )?;
        Ok(changed == 1)
    }

    /// Records how sending a signup mail ended (`sent` or `failed`).
    pub fn signup_mail_done(
        &self,
        tag: &str,
        state: &str,
        reply: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.run(
            "UPDATE signup_mails SET state = ?2, reply = ?3, updated_at = ?4 WHERE tag = ?1",
            &[
                t(tag),
                t(state),
                V::T(reply.map(str::to_string)),
                t(ts(now)),
            ],
        )?;
        Ok(())
    }

    /// The signup mails sent to `email`, oldest first (without their text).
    pub fn signup_mails(&self, email: &str) -> Result<Vec<SignupMail>> {
        self.rows(
            "SELECT tag, address, kind, state, attempts, created_at, updated_at, reply, '', ''
             FROM signup_mails WHERE address_key = ?1 ORDER BY created_at, tag",
            &[t(address_key(email))],
            &[K::T, K::T, K::T, K::T, K::I, K::T, K::T, K::T, K::T, K::T],
        )?
        .iter()
        .map(|r| mail_from(r))
        .collect()
    }

    /// The consent records of `email`, oldest first.
    pub fn consents(&self, email: &str) -> Result<Vec<Consent>> {
        self.rows(
            "SELECT at, form, lists, text FROM consents WHERE address_key = ?1 ORDER BY at, form",
            &[t(address_key(email))],
            &[K::T, K::T, K::T, K::T],
        )?
        .iter()
        .map(|r| {
            Ok(Consent {
                at: parse_ts(&r[0].text())?,
                form: r[1].text(),
                lists: split_lists(&r[2].text()),
                text: r[3].text(),
            })
        })
        .collect()
    }

    /// What the journal holds about messages to `email`, oldest first.
    pub fn deliveries_to(&self, email: &str) -> Result<Vec<Delivery>> {
        Ok(self
            .rows(
                "SELECT edition, namespace, state, first_attempt_at, updated_at, message_id FROM journal
                 WHERE address_key = ?1 ORDER BY id",
                &[t(address_key(email))],
                &[K::T, K::T, K::T, K::T, K::T, K::T],
            )?
            .iter()
            .map(|r| Delivery {
                edition: r[0].text(),
                namespace: r[1].text(),
                state: r[2].text(),
                first_attempt_at: r[3].opt(),
                updated_at: r[4].opt(),
                message_id: r[5].opt(),
            })
            .collect())
    }

    /// Erases a reader: their managed-list data, consents, pending signups and signup
    /// mails go; the journal keeps its rows (counts stay right) with the address
    /// replaced by its [`erased_key`] and anything not yet sent marked `suppressed`;
    /// the suppression list keeps only the erased key (with the source of a
    /// suppression the address had: a bounce stays a bounce), which sends honour. Run
    /// in a transaction.
    pub fn erase_reader(&self, email: &str, at: DateTime<Utc>) -> Result<()> {
        let key = address_key(email);
        let erased = erased_key(email);
        let source = self
            .suppression(email)?
            .map_or(super::SuppressionSource::Page, |s| s.source);
        for table in [
            "readers",
            "memberships",
            "consents",
            "pending_signups",
            "signup_mails",
            "suppressions",
        ] {
            self.run(
                &format!("DELETE FROM {table} WHERE address_key = ?1"),
                &[t(key.clone())],
            )?;
        }
        self.run(
            "UPDATE journal SET state = 'suppressed', updated_at = ?2
             WHERE address_key = ?1 AND state IN ('pending', 'deferred')",
            &[t(key.clone()), t(ts(at))],
        )?;
        self.run(
            "UPDATE journal SET address_key = ?2, address = ?2, name = '', fields = '{}', reply = NULL
             WHERE address_key = ?1",
            &[t(key), t(erased.clone())],
        )?;
        self.forget_bounces(email)?;
        self.run(
            "INSERT INTO suppressions (address_key, address, suppressed_at, source, edition)
             VALUES (?1, ?1, ?2, ?3, NULL) ON CONFLICT (address_key) DO NOTHING",
            &[t(erased), t(ts(at)), t(source.as_str())],
        )?;
        Ok(())
    }

    /// Whether `email` was erased (its [`erased_key`] is on the suppression list).
    pub fn is_erased(&self, email: &str) -> Result<bool> {
        Ok(self.count(
            "SELECT count(*) FROM suppressions WHERE address_key = ?1",
            &[t(erased_key(email))],
        )? > 0)
    }

    /// Every erased key, for a send to skip erased readers a stale CSV still lists.
    pub fn erased_keys(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self
            .rows(
                "SELECT address_key FROM suppressions WHERE address_key LIKE 'sha256:%'",
                &[],
                &[K::T],
            )?
            .iter()
            .map(|r| r[0].text())
            .collect())
    }

    /// Lifts the erased key of `email` (the reader signed up again and confirmed).
    pub fn forget_erasure(&self, email: &str) -> Result<()> {
        self.run(
            "DELETE FROM suppressions WHERE address_key = ?1",
            &[t(erased_key(email))],
        )?;
        Ok(())
    }
}

fn mail_from(r: &[V]) -> Result<SignupMail> {
    Ok(SignupMail {
        tag: r[0].text(),
        address: r[1].text(),
        kind: r[2].text(),
        state: r[3].text(),
        attempts: u32::try_from(r[4].int()).unwrap_or(u32::MAX),
        created_at: parse_ts(&r[5].text())?,
        updated_at: parse_ts(&r[6].text())?,
        reply: r[7].opt(),
        subject: r[8].text(),
        body: r[9].text(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Suppression, SuppressionSource, REAL};

    fn consent(form: &str, lists: &[&str]) -> Consent {
        Consent {
            at: crate::clock::now(),
            form: form.into(),
            lists: lists.iter().map(|l| l.to_string()).collect(),
            text: "yes please".into(),
        }
    }

    #[test]
    fn an_erased_bounce_stays_a_bounce() {
        let s = Store::in_memory().unwrap();
        s.suppress(&Suppression {
            address: "gone@example.org".into(),
            suppressed_at: crate::clock::now(),
            source: SuppressionSource::Bounce,
            edition: Some("e1".into()),
        })
        .unwrap();
        s.erase_reader("gone@example.org", crate::clock::now())
            .unwrap();
        let kept = s
            .suppression(&erased_key("Gone@example.org"))
            .unwrap()
            .unwrap();
        assert_eq!(kept.source, SuppressionSource::Bounce);
        assert_eq!(kept.edition, None);
        assert!(!s.is_suppressed("gone@example.org").unwrap());
    }

    #[test]
    fn statements_are_rewritten_for_postgresql() {
        assert_eq!(
            pg_sql("SELECT ?1, '?' FROM t WHERE a = ?12 AND b = ?"),
            "SELECT $1, '?' FROM t WHERE a = $12 AND b = ?"
        );
    }

    #[test]
    fn adding_a_list_keeps_a_reader_confirmed() {
        let s = Store::in_memory().unwrap();
        let first = consent("signup form", &["local"]);
        let confirmed_at = first.at;
        s.add_reader(&Addition {
            address: "Ann@Example.org",
            name: Some("Ann"),
            fields: None,
            lists: &["local".into()],
            consent: first,
        })
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.add_reader(&Addition {
            address: "ann@example.org",
            name: None,
            fields: None,
            lists: &["culture".into()],
            consent: consent("signup form", &["culture"]),
        })
        .unwrap();
        let r = s.reader("ANN@example.org").unwrap().unwrap();
        assert_eq!(r.lists, vec!["culture", "local"]);
        assert_eq!(r.name, "Ann");
        assert_eq!(r.confirmed_at, confirmed_at);
        assert_eq!(s.consents("ann@example.org").unwrap().len(), 2);
        assert_eq!(
            s.list_counts("local", crate::clock::now())
                .unwrap()
                .confirmed,
            1
        );
        assert!(s.remove_membership("ann@example.org", "local").unwrap());
        assert_eq!(
            s.reader("ann@example.org").unwrap().unwrap().lists,
            vec!["culture"]
        );
    }

    #[test]
    fn pending_signups_expire_from_the_counts() {
        let s = Store::in_memory().unwrap();
        let now = crate::clock::now();
        let later = now + chrono::Duration::hours(1);
        s.add_pending("n1", "a@x.org", "192.0.2.1", &["local".into()], now, later)
            .unwrap();
        s.add_pending("n2", "A@x.org", "192.0.2.2", &["local".into()], now, later)
            .unwrap();
        assert_eq!(
            s.pending_counts("a@X.org", "192.0.2.1", now).unwrap(),
            (2, 1)
        );
        assert_eq!(s.list_counts("local", now).unwrap().pending, 2);
        assert_eq!(s.list_counts("local", later).unwrap().pending, 0);
        assert!(s.take_pending("n1").unwrap());
        assert!(!s.take_pending("n1").unwrap());
        assert_eq!(
            s.pending_counts("a@x.org", "192.0.2.1", now).unwrap(),
            (1, 0)
        );
    }

    #[test]
    fn erasure_keeps_only_a_hash() {
        let s = Store::in_memory().unwrap();
        s.add_reader(&Addition {
            address: "ann@example.org",
            name: Some("Ann"),
            fields: None,
            lists: &["local".into()],
            consent: consent("signup form", &["local"]),
        })
        .unwrap();
        s.suppress(&Suppression {
            address: "ann@example.org".into(),
            suppressed_at: crate::clock::now(),
            source: SuppressionSource::Page,
            edition: None,
        })
        .unwrap();
        let mut rows = ["ann@example.org", "bob@example.org"].into_iter().map(|a| {
            crate::store::NewRecipient {
                address: a.into(),
                name: "Ann".into(),
                fields: "{}".into(),
            }
        });
        s.freeze("e1", REAL, crate::clock::now(), &mut rows, &mut || 0)
            .unwrap();
        s.transaction(|s| s.erase_reader("Ann@example.org", crate::clock::now()))
            .unwrap();
        assert!(s.reader("ann@example.org").unwrap().is_none());
        assert!(s.consents("ann@example.org").unwrap().is_empty());
        assert!(!s.is_suppressed("ann@example.org").unwrap());
        assert!(s.is_erased("ANN@example.org").unwrap());
        assert!(s
            .erased_keys()
            .unwrap()
            .contains(&erased_key("ann@example.org")));
        let held: Vec<String> = s
            .suppressions()
            .unwrap()
            .into_iter()
            .map(|x| x.address)
            .collect();
        assert!(held.iter().all(|a| !a.contains("ann")), "{held:?}");
        assert_eq!(s.counts("e1", REAL).unwrap().suppressed, 1);
        assert!(s.deliveries_to("ann@example.org").unwrap().is_empty());
        assert_eq!(s.deliveries_to("bob@example.org").unwrap().len(), 1);
    }
}
