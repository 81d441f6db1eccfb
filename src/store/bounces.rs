//! What came back after a send: bounce and complaint events per (edition, recipient),
//! the reason kept beside a suppression they caused, and the journal look-ups that
//! attribute a returned message to a send. Written only through
//! `bounce::policy::apply`.

use super::journal::REAL;
use super::pg::pg_params;
use super::{address_key, Engine, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bounce_events (
    event_key   TEXT PRIMARY KEY,
    address_key TEXT NOT NULL,
    edition     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT,
    diagnostic  TEXT,
    at          TEXT NOT NULL,
    counted     INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS bounce_events_address ON bounce_events (address_key, kind);
CREATE INDEX IF NOT EXISTS bounce_events_edition ON bounce_events (edition, kind);
CREATE TABLE IF NOT EXISTS suppression_reasons (
    address_key TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    edition     TEXT NOT NULL,
    status      TEXT,
    diagnostic  TEXT
);
CREATE INDEX IF NOT EXISTS journal_tried_address ON journal (address_key)
    WHERE state <> 'pending';
";
pub(super) const PG_SCHEMA: &str = "
CREATE TABLE bounce_events (
    event_key   TEXT PRIMARY KEY,
    address_key TEXT NOT NULL,
    edition     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT,
    diagnostic  TEXT,
    at          TEXT NOT NULL,
    counted     BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX bounce_events_address ON bounce_events (address_key, kind);
CREATE INDEX bounce_events_edition ON bounce_events (edition, kind);
CREATE TABLE suppression_reasons (
    address_key TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    edition     TEXT NOT NULL,
    status      TEXT,
    diagnostic  TEXT
);
CREATE INDEX journal_tried_address ON journal (address_key) WHERE state <> 'pending';
";
// Partial: freezing an audience writes `pending` rows and pays nothing for it. The
// Message-ID look-up uses `journal_message_id` (store/events.rs). PostgreSQL replaces
// these indexes from schema version 5 (`PG_HOT_SCHEMA` in pg_journal.rs).

/// One recorded event, as the policy hands it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceEvent<'a> {
    /// Unique per returned message and recipient: the same message seen twice is one event.
    pub key: &'a str,
    pub address: &'a str,
    pub edition: &'a str,
    /// `hard`, `soft` or `complaint`.
    pub kind: &'a str,
    pub status: Option<&'a str>,
    pub diagnostic: Option<&'a str>,
    pub at: DateTime<Utc>,
}

/// Why a bounce or complaint suppressed an address (shown by `brief suppressions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionReason {
    pub kind: String,
    pub edition: String,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

/// One edition's events after acceptance (`brief status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BounceCounts {
    /// Recipients with a hard or soft bounce for this edition.
    pub bounced: u64,
    pub complained: u64,
    /// Addresses suppressed because of this edition's bounces and complaints.
    pub suppressed: u64,
}

impl Store {
    /// Records an event; false when this key was recorded before (nothing changed).
    pub fn record_bounce(&self, e: &BounceEvent<'_>) -> Result<bool> {
        let values = (
            e.key.to_string(),
            address_key(e.address),
            e.edition.to_string(),
            e.kind.to_string(),
            e.status.map(str::to_string),
            e.diagnostic.map(str::to_string),
            e.at.to_rfc3339(),
        );
        let changed = match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO bounce_events
                     (event_key, address_key, edition, kind, status, diagnostic, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    values.0, values.1, values.2, values.3, values.4, values.5, values.6
                ])? as u64,
            Engine::Pg(pg) => pg.execute(
                "INSERT INTO bounce_events
                 (event_key, address_key, edition, kind, status, diagnostic, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                pg_params![values.0, values.1, values.2, values.3, values.4, values.5, values.6],
            )?,
        };
        Ok(changed == 1)
    }

    /// The editions (of the real send) in which the address had a counted event of
    /// `kind`, each once.
    pub fn bounce_editions(&self, email: &str, kind: &str) -> Result<Vec<String>> {
        let key = address_key(email);
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT DISTINCT edition FROM bounce_events
                     WHERE address_key = ?1 AND kind = ?2 AND counted = 1",
                )?
                .query_map([key, kind.to_string()], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?,
            Engine::Pg(pg) => pg
                .query(
                    "SELECT DISTINCT edition FROM bounce_events
                     WHERE address_key = $1 AND kind = $2 AND counted = 1",
                    pg_params![key, kind.to_string()],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        })
    }

    /// The address's real sends that got past `pending`, newest first: (edition,
    /// journal state).
    pub fn sends_to(&self, email: &str) -> Result<Vec<(String, String)>> {
        let key = address_key(email);
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT j.edition, j.state FROM journal j
                     JOIN sends s ON s.edition = j.edition AND s.namespace = j.namespace
                     WHERE j.address_key = ?1 AND j.namespace = ?2 AND j.state <> 'pending'
                     ORDER BY s.started_at DESC, j.id DESC",
                )?
                .query_map([key, REAL.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?,
            Engine::Pg(pg) => pg
                .query(
                    "SELECT j.edition, j.state FROM journal j
                     JOIN sends s ON s.edition = j.edition AND s.namespace = j.namespace
                     WHERE j.address_key = $1 AND j.namespace = $2 AND j.state <> 'pending'
                     ORDER BY s.started_at DESC, j.id DESC",
                    pg_params![key, REAL],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        })
    }

    /// Whether the real send of `edition` handed a message for `email` to the relay
    /// (or tried to: in doubt, deferred, refused, expired).
    pub fn was_sent(&self, edition: &str, email: &str) -> Result<bool> {
        let key = address_key(email);
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT 1 FROM journal WHERE edition = ?1 AND namespace = ?2 AND address_key = ?3
                     AND state IN ('sent', 'in_doubt', 'deferred', 'bounced', 'expired')",
                )?
                .query_row(params![edition, REAL, key], |r| r.get::<_, i64>(0))
                .optional()?
                .is_some(),
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT 1 FROM journal WHERE edition = $1 AND namespace = $2 AND address_key = $3
                     AND state IN ('sent', 'in_doubt', 'deferred', 'bounced', 'expired')",
                    pg_params![edition.to_string(), REAL, key],
                )?
                .is_some(),
        })
    }

    /// The (edition, address) of the real send whose message had this Message-ID
    /// (with or without the angle brackets).
    pub fn send_by_message_id(&self, message_id: &str) -> Result<Option<(String, String)>> {
        let bare = message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        let id = format!("<{bare}>");
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT edition, address FROM journal WHERE message_id = ?1 AND namespace = ?2",
                )?
                .query_row(params![id, REAL], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT j.edition, j.address FROM journal_message_ids m JOIN journal j ON j.id = m.journal_id
                     WHERE m.message_id = $1 AND j.namespace = $2 LIMIT 1",
                    pg_params![id, REAL],
                )?
                .map(|r| (r.get(0), r.get(1))),
        })
    }

    /// The (edition, address) of the real send whose VERP token (its Message-ID's
    /// local part, see `token::verp_address`) this is.
    pub fn send_by_verp_token(&self, token: &str) -> Result<Option<(String, String)>> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        // Every Message-ID `<token@…>`: from `<token@` up to `<tokenA` ('A' follows '@').
        let token = token.to_ascii_lowercase();
        let (from, to) = (format!("<{token}@"), format!("<{token}A"));
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT edition, address FROM journal
                     WHERE message_id >= ?1 AND message_id < ?2 AND namespace = ?3",
                )?
                .query_row(params![from, to, REAL], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            // `journal_message_ids` is in byte order ("C"), as SQLite compares.
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT j.edition, j.address FROM journal_message_ids m JOIN journal j ON j.id = m.journal_id
                     WHERE m.message_id >= $1 AND m.message_id < $2 AND j.namespace = $3 LIMIT 1",
                    pg_params![from, to, REAL],
                )?
                .map(|r| (r.get(0), r.get(1))),
        })
    }

    /// Keeps why a bounce or complaint suppressed the address (the first reason stays).
    pub fn record_suppression_reason(&self, email: &str, reason: &SuppressionReason) -> Result<()> {
        let (key, r) = (address_key(email), reason.clone());
        match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO suppression_reasons (address_key, kind, edition, status, diagnostic)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![key, r.kind, r.edition, r.status, r.diagnostic])?
                as u64,
            Engine::Pg(pg) => pg.execute(
                "INSERT INTO suppression_reasons (address_key, kind, edition, status, diagnostic)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                pg_params![key, r.kind, r.edition, r.status, r.diagnostic],
            )?,
        };
        Ok(())
    }

    /// Every kept reason, by address key.
    pub fn suppression_reasons(&self) -> Result<HashMap<String, SuppressionReason>> {
        const SELECT: &str = "SELECT r.address_key, r.kind, r.edition, r.status, r.diagnostic
             FROM suppression_reasons r JOIN suppressions s ON s.address_key = r.address_key";
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare(SELECT)?
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        SuppressionReason {
                            kind: r.get(1)?,
                            edition: r.get(2)?,
                            status: r.get(3)?,
                            diagnostic: r.get(4)?,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?,
            Engine::Pg(pg) => pg
                .query(SELECT, vec![])?
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        SuppressionReason {
                            kind: r.get(1),
                            edition: r.get(2),
                            status: r.get(3),
                            diagnostic: r.get(4),
                        },
                    )
                })
                .collect(),
        })
    }

    /// After `brief resubscribe`: the address's past events stop counting (they stay
    /// recorded, so the same messages read again count nothing) and the reason goes.
    pub fn forget_bounces(&self, email: &str) -> Result<()> {
        let key = address_key(email);
        match &self.engine {
            Engine::Sqlite(db) => {
                db.conn.execute(
                    "UPDATE bounce_events SET counted = 0 WHERE address_key = ?1",
                    [&key],
                )?;
                db.conn.execute(
                    "DELETE FROM suppression_reasons WHERE address_key = ?1",
                    [&key],
                )?;
            }
            Engine::Pg(pg) => {
                pg.execute(
                    "UPDATE bounce_events SET counted = 0 WHERE address_key = $1",
                    pg_params![key.clone()],
                )?;
                pg.execute(
                    "DELETE FROM suppression_reasons WHERE address_key = $1",
                    pg_params![key],
                )?;
            }
        }
        Ok(())
    }

    /// One edition's bounces and complaints after acceptance.
    pub fn bounce_counts(&self, edition: &str) -> Result<BounceCounts> {
        const BOUNCED: &str = "SELECT count(DISTINCT address_key) FROM bounce_events
             WHERE edition = ?1 AND kind IN ('hard', 'soft') AND event_key NOT LIKE 'smtp:%'";
        const COMPLAINED: &str = "SELECT count(DISTINCT address_key) FROM bounce_events
             WHERE edition = ?1 AND kind = 'complaint'";
        const SUPPRESSED: &str = "SELECT count(*) FROM suppression_reasons r JOIN suppressions s
             ON s.address_key = r.address_key WHERE r.edition = ?1";
        let count = |sql: &str| -> Result<u64> {
            let n: i64 = match &self.engine {
                Engine::Sqlite(db) => db.conn.query_row(sql, [edition], |r| r.get(0))?,
                Engine::Pg(pg) => pg
                    .query_one(&sql.replace("?1", "$1"), pg_params![edition.to_string()])?
                    .get(0),
            };
            Ok(n as u64)
        };
        if let Engine::Sqlite(db) = &self.engine {
            // A read-only store written before these tables existed has nothing to count.
            let tables: i64 = db.conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'
                 AND name IN ('bounce_events', 'suppression_reasons')",
                [],
                |r| r.get(0),
            )?;
            if tables < 2 {
                return Ok(BounceCounts::default());
            }
        }
        Ok(BounceCounts {
            bounced: count(BOUNCED)?,
            complained: count(COMPLAINED)?,
            suppressed: count(SUPPRESSED)?,
        })
    }
}
