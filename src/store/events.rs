//! Provider events (webhooks of SES, Mailgun, Postmark, SendGrid): one row per
//! (provider, event id), so a provider that delivers an event twice changes nothing
//! the second time; the nonces a provider's signature carries, so a captured request
//! cannot be replayed; and the journal look-ups that attribute an event to a send.

use super::pg::pg_params;
use super::{address_key, Engine, Store, REAL};
use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS provider_events (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    recipient   TEXT,
    address_key TEXT,
    status      TEXT,
    diagnostic  TEXT,
    message_id  TEXT,
    occurred_at TEXT,
    received_at TEXT NOT NULL,
    edition     TEXT,
    outcome     TEXT NOT NULL,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX IF NOT EXISTS provider_events_address ON provider_events (address_key);
CREATE TABLE IF NOT EXISTS provider_nonces (
    provider TEXT NOT NULL,
    nonce    TEXT NOT NULL,
    seen_at  TEXT NOT NULL,
    PRIMARY KEY (provider, nonce)
);
CREATE INDEX IF NOT EXISTS journal_message_id ON journal (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS journal_sent_address ON journal (address_key, updated_at)
    WHERE message_id IS NOT NULL;
";
pub(super) const PG_SCHEMA: &str = "
CREATE TABLE provider_events (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    recipient   TEXT,
    address_key TEXT,
    status      TEXT,
    diagnostic  TEXT,
    message_id  TEXT,
    occurred_at TEXT,
    received_at TEXT NOT NULL,
    edition     TEXT,
    outcome     TEXT NOT NULL,
    seq         BIGSERIAL,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX provider_events_address ON provider_events (address_key);
CREATE TABLE provider_nonces (
    provider TEXT NOT NULL,
    nonce    TEXT NOT NULL,
    seen_at  TEXT NOT NULL,
    PRIMARY KEY (provider, nonce)
);
CREATE INDEX journal_message_id ON journal (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX journal_sent_address ON journal (address_key, updated_at)
    WHERE message_id IS NOT NULL;
";
// `seq` orders events as they arrived (SQLite's rowid does that there).
// Both journal indexes are partial: freezing an audience writes rows without a
// Message-ID, so it pays nothing for them; only rows of messages made are indexed.
// PostgreSQL replaces them from schema version 5 (`PG_HOT_SCHEMA` in pg_journal.rs).

/// One provider event as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderEvent {
    pub provider: String,
    pub event_id: String,
    /// `hard`, `soft`, `complaint`, `unsubscribe` or `other`.
    pub kind: String,
    pub recipient: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
    /// The provider's copy of the original Message-ID (or its own message id).
    pub message_id: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// The edition the event was attributed to; none when this newsletter never sent
    /// to the recipient.
    pub edition: Option<String>,
    /// What applying it did: `suppressed`, `already-suppressed` (an unsubscribe),
    /// `counted` (by the `[bounces]` policy, below its threshold), `not-sent`,
    /// `duplicate` or `unattributed`. The policy's own record of a bounce or complaint
    /// is in `bounce_events` (store/bounces.rs).
    pub outcome: String,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl Store {
    /// Records `nonce` for `provider` and forgets nonces seen before `forget_before`;
    /// false if the nonce was already seen (a replay).
    pub fn take_nonce(
        &self,
        provider: &str,
        nonce: &str,
        at: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<bool> {
        let (provider, nonce) = (provider.to_string(), nonce.to_string());
        let added = match &self.engine {
            Engine::Sqlite(db) => {
                db.conn
                    .prepare_cached(
                        "DELETE FROM provider_nonces WHERE provider = ?1 AND seen_at < ?2",
                    )?
                    .execute(params![provider, ts(forget_before)])?;
                db.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO provider_nonces (provider, nonce, seen_at) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![provider, nonce, ts(at)])? as u64
            }
            Engine::Pg(pg) => {
                pg.execute(
                    "DELETE FROM provider_nonces WHERE provider = $1 AND seen_at < $2",
                    pg_params![provider.clone(), ts(forget_before)],
                )?;
                pg.execute(
                    "INSERT INTO provider_nonces (provider, nonce, seen_at) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    pg_params![provider, nonce, ts(at)],
                )?
            }
        };
        Ok(added == 1)
    }

    pub fn has_event(&self, provider: &str, event_id: &str) -> Result<bool> {
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT 1 FROM provider_events WHERE provider = ?1 AND event_id = ?2",
                )?
                .query_row(params![provider, event_id], |r| r.get::<_, i64>(0))
                .optional()?
                .is_some(),
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT 1 FROM provider_events WHERE provider = $1 AND event_id = $2",
                    pg_params![provider.to_string(), event_id.to_string()],
                )?
                .is_some(),
        })
    }

    /// Records an event; false if (provider, event id) was already recorded.
    pub fn record_event(&self, e: &ProviderEvent) -> Result<bool> {
        let e = e.clone();
        let key = e.recipient.as_deref().map(address_key);
        let (occurred, received) = (e.occurred_at.map(ts), ts(e.received_at));
        let added = match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO provider_events (provider, event_id, kind, recipient, address_key,
                       status, diagnostic, message_id, occurred_at, received_at, edition, outcome)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?
                .execute(params![
                    e.provider,
                    e.event_id,
                    e.kind,
                    e.recipient,
                    key,
                    e.status,
                    e.diagnostic,
                    e.message_id,
                    occurred,
                    received,
                    e.edition,
                    e.outcome,
                ])? as u64,
            Engine::Pg(pg) => pg.execute(
                "INSERT INTO provider_events (provider, event_id, kind, recipient, address_key,
                   status, diagnostic, message_id, occurred_at, received_at, edition, outcome)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
                pg_params![
                    e.provider,
                    e.event_id,
                    e.kind,
                    e.recipient,
                    key,
                    e.status,
                    e.diagnostic,
                    e.message_id,
                    occurred,
                    received,
                    e.edition,
                    e.outcome,
                ],
            )?,
        };
        Ok(added == 1)
    }

    /// The edition whose real-send message to `recipient` carried `message_id`, if any.
    pub fn edition_by_message_id(
        &self,
        message_id: &str,
        recipient: &str,
    ) -> Result<Option<String>> {
        let (id, key) = (message_id.to_string(), address_key(recipient));
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT edition FROM journal
                     WHERE message_id = ?1 AND address_key = ?2 AND namespace = ?3 LIMIT 1",
                )?
                .query_row(params![id, key, REAL], |r| r.get(0))
                .optional()?,
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT j.edition FROM journal_message_ids m JOIN journal j ON j.id = m.journal_id
                     WHERE m.message_id = $1 AND j.address_key = $2 AND j.namespace = $3 LIMIT 1",
                    pg_params![id, key, REAL],
                )?
                .map(|r| r.get(0)),
        })
    }

    /// The latest edition whose real send made a message to `recipient` since `since`
    /// (test sends go to the editors, not to readers).
    pub fn recent_edition_for(
        &self,
        recipient: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<String>> {
        // A row with a Message-ID is one whose message was made and handed over (or
        // about to be): the newsletter did send to this address.
        let key = address_key(recipient);
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT edition FROM journal
                     WHERE address_key = ?1 AND message_id IS NOT NULL AND updated_at >= ?2
                       AND namespace = ?3
                     ORDER BY updated_at DESC LIMIT 1",
                )?
                .query_row(params![key, ts(since), REAL], |r| r.get(0))
                .optional()?,
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT edition FROM journal
                     WHERE address_key = $1 AND message_id IS NOT NULL AND updated_at >= $2
                       AND namespace = $3
                     ORDER BY updated_at DESC LIMIT 1",
                    pg_params![key, ts(since), REAL],
                )?
                .map(|r| r.get(0)),
        })
    }

    /// Every recorded provider event, oldest first.
    pub fn provider_events(&self) -> Result<Vec<ProviderEvent>> {
        const COLUMNS: &str = "provider, event_id, kind, recipient, status, diagnostic, message_id,
                    occurred_at, received_at, edition, outcome";
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM provider_events ORDER BY received_at, rowid"
                ))?
                .query_map([], |r| {
                    Ok(ProviderEvent {
                        provider: r.get(0)?,
                        event_id: r.get(1)?,
                        kind: r.get(2)?,
                        recipient: r.get(3)?,
                        status: r.get(4)?,
                        diagnostic: r.get(5)?,
                        message_id: r.get(6)?,
                        occurred_at: parse_ts(r.get(7)?),
                        received_at: parse_ts(r.get(8)?).unwrap_or_default(),
                        edition: r.get(9)?,
                        outcome: r.get(10)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            Engine::Pg(pg) => pg
                .query(
                    &format!("SELECT {COLUMNS} FROM provider_events ORDER BY received_at, seq"),
                    vec![],
                )?
                .iter()
                .map(|r| ProviderEvent {
                    provider: r.get(0),
                    event_id: r.get(1),
                    kind: r.get(2),
                    recipient: r.get(3),
                    status: r.get(4),
                    diagnostic: r.get(5),
                    message_id: r.get(6),
                    occurred_at: parse_ts(r.get(7)),
                    received_at: parse_ts(r.get(8)).unwrap_or_default(),
                    edition: r.get(9),
                    outcome: r.get(10),
                })
                .collect(),
        })
    }
}
