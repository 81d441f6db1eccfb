//! Managed lists: readers who signed up (or were added by the editors) and the lists
//! they are on, the consent behind each addition, the signups still waiting for a
//! confirmation, the mails sent for signups, and erasure ("delete my data").
//!
//! Only confirmed readers are in `readers`: a signup waits in `pending_signups` (which
//! only counts and bounds them; the confirmation link itself carries what was asked)
//! until its link is opened. Confirmation belongs to the reader, not to a list, so
//! adding a list later keeps them confirmed.

use super::{address_key, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
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
CREATE INDEX IF NOT EXISTS signup_mails_by_address ON signup_mails (address_key);
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

impl Store {
    /// Whether this store has the managed-list tables (a read-only store written by an
    /// older brief may not).
    pub fn manages_lists(&self) -> bool {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'memberships'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n == 1)
    }

    /// Adds a reader to `lists` (confirmed), with the consent record. A reader already
    /// confirmed stays confirmed (their first confirmation time is kept).
    pub fn add_reader(&self, a: &Addition<'_>) -> Result<()> {
        let key = address_key(a.address);
        let now = ts(a.consent.at);
        self.conn.execute(
            "INSERT INTO readers (address_key, address, name, fields, confirmed_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (address_key) DO UPDATE SET
                 address = excluded.address,
                 name = CASE WHEN ?6 THEN excluded.name ELSE readers.name END,
                 fields = CASE WHEN ?7 THEN excluded.fields ELSE readers.fields END,
                 updated_at = excluded.updated_at",
            params![
                key,
                a.address.trim(),
                a.name.unwrap_or(""),
                a.fields.unwrap_or("{}"),
                now,
                a.name.is_some(),
                a.fields.is_some()
            ],
        )?;
        for list in a.lists {
            self.conn.execute(
                "INSERT INTO memberships (list, address_key, added_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (list, address_key) DO NOTHING",
                params![list, key, now],
            )?;
        }
        self.record_consent(a.address, &a.consent)?;
        Ok(())
    }

    /// Records a consent (also for a change made in the preference centre).
    pub fn record_consent(&self, email: &str, c: &Consent) -> Result<()> {
        self.conn.execute(
            "INSERT INTO consents (address_key, at, form, lists, text) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (address_key, at, form) DO NOTHING",
            params![
                address_key(email),
                ts(c.at),
                c.form,
                c.lists.join(","),
                c.text
            ],
        )?;
        Ok(())
    }

    /// Takes a reader off `list`; returns false if they were not on it.
    pub fn remove_membership(&self, email: &str, list: &str) -> Result<bool> {
        let changed = self.conn.execute(
            "DELETE FROM memberships WHERE list = ?1 AND address_key = ?2",
            params![list, address_key(email)],
        )?;
        Ok(changed == 1)
    }

    /// Renames a confirmed reader.
    pub fn rename_reader(&self, email: &str, name: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn.execute(
            "UPDATE readers SET name = ?2, updated_at = ?3 WHERE address_key = ?1",
            params![address_key(email), name, ts(at)],
        )?;
        Ok(())
    }

    /// A confirmed reader and their lists.
    pub fn reader(&self, email: &str) -> Result<Option<Reader>> {
        let key = address_key(email);
        let row = self
            .conn
            .prepare_cached(
                "SELECT address, name, fields, confirmed_at FROM readers WHERE address_key = ?1",
            )?
            .query_row([&key], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .optional()?;
        let Some((address, name, fields, confirmed_at)) = row else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT list FROM memberships WHERE address_key = ?1 ORDER BY list")?;
        let lists = stmt
            .query_map([&key], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(Some(Reader {
            address,
            name,
            fields,
            confirmed_at: parse_ts(&confirmed_at)?,
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
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.address, r.name, r.fields, r.address_key
             FROM memberships m JOIN readers r ON r.address_key = m.address_key
             WHERE m.list = ?1 AND m.address_key > ?2
             ORDER BY m.address_key LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![list, after, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The extra field names of `list`'s members (the union, sorted).
    pub fn member_columns(&self, list: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT r.fields FROM memberships m JOIN readers r ON r.address_key = m.address_key
             WHERE m.list = ?1 AND r.fields <> '{}'",
        )?;
        let mut names = std::collections::BTreeSet::new();
        for fields in stmt.query_map([list], |r| r.get::<_, String>(0))? {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&fields?) {
                names.extend(map.keys().cloned());
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Every reader of `list` (or of any managed list), by address key.
    pub fn readers(&self, list: Option<&str>) -> Result<Vec<Reader>> {
        let mut stmt = self.conn.prepare(
            "SELECT address_key FROM readers r WHERE ?1 IS NULL
                OR EXISTS (SELECT 1 FROM memberships m WHERE m.address_key = r.address_key AND m.list = ?1)
             ORDER BY address_key",
        )?;
        let keys = stmt
            .query_map([list], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.extend(self.reader(&key)?);
        }
        Ok(out)
    }

    /// Confirmed members and unexpired pending signups of `list` at `now`.
    pub fn list_counts(&self, list: &str, now: DateTime<Utc>) -> Result<ListCounts> {
        let confirmed: i64 = self.conn.query_row(
            "SELECT count(*) FROM memberships WHERE list = ?1",
            [list],
            |r| r.get(0),
        )?;
        let mut stmt = self
            .conn
            .prepare("SELECT lists FROM pending_signups WHERE expires_at > ?1")?;
        let mut pending = 0;
        for lists in stmt.query_map([ts(now)], |r| r.get::<_, String>(0))? {
            if split_lists(&lists?).iter().any(|l| l == list) {
                pending += 1;
            }
        }
        Ok(ListCounts {
            confirmed: confirmed as u64,
            pending,
        })
    }

    /// Unexpired pending signups for `email`, and started by `client`, at `now`.
    pub fn pending_counts(
        &self,
        email: &str,
        client: &str,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64)> {
        let count = |column: &str, value: &str| -> Result<u64> {
            let n: i64 = self.conn.query_row(
                &format!(
                    "SELECT count(*) FROM pending_signups WHERE {column} = ?1 AND expires_at > ?2"
                ),
                params![value, ts(now)],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        };
        Ok((
            count("address_key", &address_key(email))?,
            count("client", client)?,
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
        self.conn.execute(
            "DELETE FROM pending_signups WHERE expires_at <= ?1",
            [ts(now)],
        )?;
        self.conn.execute(
            "INSERT INTO pending_signups (nonce, address_key, client, lists, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (nonce) DO NOTHING",
            params![nonce, address_key(email), client, lists.join(","), ts(now), ts(expires)],
        )?;
        Ok(())
    }

    /// Forgets a pending signup once confirmed.
    pub fn remove_pending(&self, nonce: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM pending_signups WHERE nonce = ?1", [nonce])?;
        Ok(())
    }

    /// Spends a proof-of-work challenge: true the first time, false if it was used
    /// already (a solved challenge answers once). Forgets expired ones.
    pub fn spend_challenge(
        &self,
        challenge: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.conn.execute(
            "DELETE FROM spent_challenges WHERE expires_at <= ?1",
            [ts(now)],
        )?;
        let changed = self.conn.execute(
            "INSERT INTO spent_challenges (challenge, expires_at) VALUES (?1, ?2)
             ON CONFLICT (challenge) DO NOTHING",
            params![challenge, ts(expires)],
        )?;
        Ok(changed == 1)
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
        self.conn.execute(
            "INSERT INTO signup_mails (tag, address_key, address, kind, subject, body, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7) ON CONFLICT (tag) DO NOTHING",
            params![tag, address_key(email), email.trim(), kind, subject, body, ts(at)],
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
        let mut stmt = self.conn.prepare(
            "SELECT tag, address, kind, state, attempts, created_at, updated_at, reply, subject, body
             FROM signup_mails WHERE state IN ('pending', 'failed', 'sending') AND attempts < ?1
             ORDER BY created_at LIMIT 100",
        )?;
        let rows = stmt.query_map([max_attempts], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, String>(9)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (tag, address, kind, state, attempts, created, updated, reply, subject, body) =
                row?;
            let mail = SignupMail {
                tag,
                address,
                kind,
                state,
                attempts,
                created_at: parse_ts(&created)?,
                updated_at: parse_ts(&updated)?,
                reply,
                subject,
                body,
            };
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
        let changed = self.conn.execute(
            "UPDATE signup_mails SET state = 'sending', attempts = attempts + 1, updated_at = ?3
             WHERE tag = ?1 AND state = ?2 AND attempts = ?4",
            params![mail.tag, mail.state, ts(now), mail.attempts],
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
        self.conn.execute(
            "UPDATE signup_mails SET state = ?2, reply = ?3, updated_at = ?4 WHERE tag = ?1",
            params![tag, state, reply, ts(now)],
        )?;
        Ok(())
    }

    /// The signup mails sent to `email`, oldest first.
    pub fn signup_mails(&self, email: &str) -> Result<Vec<SignupMail>> {
        let mut stmt = self.conn.prepare(
            "SELECT tag, address, kind, state, attempts, created_at, updated_at, reply FROM signup_mails
             WHERE address_key = ?1 ORDER BY created_at, tag",
        )?;
        let rows = stmt.query_map([address_key(email)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (tag, address, kind, state, attempts, created, updated, reply) = row?;
            out.push(SignupMail {
                tag,
                address,
                kind,
                state,
                attempts,
                created_at: parse_ts(&created)?,
                updated_at: parse_ts(&updated)?,
                reply,
                subject: String::new(),
                body: String::new(),
            });
        }
        Ok(out)
    }

    /// The consent records of `email`, oldest first.
    pub fn consents(&self, email: &str) -> Result<Vec<Consent>> {
        let mut stmt = self.conn.prepare(
            "SELECT at, form, lists, text FROM consents WHERE address_key = ?1 ORDER BY at, form",
        )?;
        let rows = stmt.query_map([address_key(email)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at, form, lists, text) = row?;
            out.push(Consent {
                at: parse_ts(&at)?,
                form,
                lists: split_lists(&lists),
                text,
            });
        }
        Ok(out)
    }

    /// What the journal holds about messages to `email`, oldest first.
    pub fn deliveries_to(&self, email: &str) -> Result<Vec<Delivery>> {
        let mut stmt = self.conn.prepare(
            "SELECT edition, namespace, state, first_attempt_at, updated_at, message_id FROM journal
             WHERE address_key = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([address_key(email)], |r| {
            Ok(Delivery {
                edition: r.get(0)?,
                namespace: r.get(1)?,
                state: r.get(2)?,
                first_attempt_at: r.get(3)?,
                updated_at: r.get(4)?,
                message_id: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Erases a reader: their managed-list data, consents, pending signups and signup
    /// mails go; the journal keeps its rows (counts stay right) with the address
    /// replaced by its [`erased_key`] and anything not yet sent marked `suppressed`;
    /// the suppression list keeps only the erased key, which sends honour. Run in a
    /// transaction.
    pub fn erase_reader(&self, email: &str, at: DateTime<Utc>) -> Result<()> {
        let key = address_key(email);
        let erased = erased_key(email);
        for table in [
            "readers",
            "memberships",
            "consents",
            "pending_signups",
            "signup_mails",
            "suppressions",
        ] {
            self.conn.execute(
                &format!("DELETE FROM {table} WHERE address_key = ?1"),
                [&key],
            )?;
        }
        self.conn.execute(
            "UPDATE journal SET state = 'suppressed', updated_at = ?2
             WHERE address_key = ?1 AND state IN ('pending', 'deferred')",
            params![key, ts(at)],
        )?;
        self.conn.execute(
            "UPDATE journal SET address_key = ?2, address = ?2, name = '', fields = '{}', reply = NULL
             WHERE address_key = ?1",
            params![key, erased],
        )?;
        self.forget_bounces(email)?;
        self.conn.execute(
            "INSERT INTO suppressions (address_key, address, suppressed_at, source, edition)
             VALUES (?1, ?1, ?2, 'page', NULL) ON CONFLICT (address_key) DO NOTHING",
            params![erased, ts(at)],
        )?;
        Ok(())
    }

    /// Whether `email` was erased (its [`erased_key`] is on the suppression list).
    pub fn is_erased(&self, email: &str) -> Result<bool> {
        let found: Option<i64> = self
            .conn
            .prepare_cached("SELECT 1 FROM suppressions WHERE address_key = ?1")?
            .query_row([erased_key(email)], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    /// Every erased key, for a send to skip erased readers a stale CSV still lists.
    pub fn erased_keys(&self) -> Result<std::collections::HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT address_key FROM suppressions WHERE address_key LIKE 'sha256:%'")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Lifts the erased key of `email` (the reader signed up again and confirmed).
    pub fn forget_erasure(&self, email: &str) -> Result<()> {
        self.conn.execute(
            "DELETE FROM suppressions WHERE address_key = ?1",
            [erased_key(email)],
        )?;
        Ok(())
    }
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
        s.remove_pending("n1").unwrap();
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
