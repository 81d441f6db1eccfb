//! The suppression list: addresses that never receive mail again until resubscribed.

use super::pg::pg_params;
use super::{address_key, Engine, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS suppressions (
    address_key   TEXT PRIMARY KEY,
    address       TEXT NOT NULL,
    suppressed_at TEXT NOT NULL,
    source        TEXT NOT NULL,
    edition       TEXT
);
";

pub(super) const PG_SCHEMA: &str = "
CREATE TABLE suppressions (
    address_key   TEXT PRIMARY KEY,
    address       TEXT NOT NULL,
    suppressed_at TEXT NOT NULL,
    source        TEXT NOT NULL,
    edition       TEXT
);
";

/// How an address came to be suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuppressionSource {
    /// RFC 8058 one-click POST from a mailbox provider.
    OneClick,
    /// The button on the confirmation page.
    Page,
    /// A message to the `mailto` address.
    Mailto,
    /// `brief unsubscribe` by hand.
    Manual,
    /// Bounces past the `[bounces]` policy (a hard one, or soft ones in a row).
    Bounce,
    /// A spam complaint (a feedback loop or a provider's complaint notice).
    Complaint,
    /// An unsubscribe a sending provider (Mailgun, Postmark, SendGrid) received.
    Provider,
}

impl SuppressionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionSource::OneClick => "one-click",
            SuppressionSource::Page => "page",
            SuppressionSource::Mailto => "mailto",
            SuppressionSource::Manual => "manual",
            SuppressionSource::Bounce => "bounce",
            SuppressionSource::Complaint => "complaint",
            SuppressionSource::Provider => "provider",
        }
    }

    pub fn parse(s: &str) -> Option<SuppressionSource> {
        [
            SuppressionSource::OneClick,
            SuppressionSource::Page,
            SuppressionSource::Mailto,
            SuppressionSource::Manual,
            SuppressionSource::Bounce,
            SuppressionSource::Complaint,
            SuppressionSource::Provider,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One suppressed address: who, when, how, and from which edition's link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    pub address: String,
    pub suppressed_at: DateTime<Utc>,
    pub source: SuppressionSource,
    pub edition: Option<String>,
}

impl Store {
    pub fn is_suppressed(&self, email: &str) -> Result<bool> {
        let key = address_key(email);
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached("SELECT 1 FROM suppressions WHERE address_key = ?1")?
                .query_row([key], |r| r.get::<_, i64>(0))
                .optional()?
                .is_some(),
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT 1 FROM suppressions WHERE address_key = $1",
                    pg_params![key],
                )?
                .is_some(),
        })
    }

    /// Records a suppression; returns false if the address was already suppressed
    /// (the first record is kept).
    pub fn suppress(&self, s: &Suppression) -> Result<bool> {
        let (key, address, at, source, edition) = (
            address_key(&s.address),
            s.address.trim().to_string(),
            s.suppressed_at.to_rfc3339(),
            s.source.as_str(),
            s.edition.clone(),
        );
        let changed = match &self.engine {
            // Cached: `brief serve` records many of these per transaction.
            Engine::Sqlite(db) => db.conn.prepare_cached(
                "INSERT OR IGNORE INTO suppressions (address_key, address, suppressed_at, source, edition)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?.execute(params![key, address, at, source, edition])? as u64,
            Engine::Pg(pg) => pg.execute(
                "INSERT INTO suppressions (address_key, address, suppressed_at, source, edition)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                pg_params![key, address, at, source, edition],
            )?,
        };
        Ok(changed == 1)
    }

    /// Removes a suppression; returns false if the address was not suppressed. Its
    /// past bounces and complaints stop counting toward the policy.
    pub fn resubscribe(&self, email: &str) -> Result<bool> {
        let key = address_key(email);
        let changed = match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .execute("DELETE FROM suppressions WHERE address_key = ?1", [key])?
                as u64,
            Engine::Pg(pg) => pg.execute(
                "DELETE FROM suppressions WHERE address_key = $1",
                pg_params![key],
            )?,
        };
        self.forget_bounces(email)?;
        Ok(changed == 1)
    }

    /// Every suppression, oldest first.
    pub fn suppressions(&self) -> Result<Vec<Suppression>> {
        const SELECT: &str = "SELECT address, suppressed_at, source, edition FROM suppressions ORDER BY suppressed_at, address_key";
        let rows: Vec<RawRow> = match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare(SELECT)?
                .query_map([], raw_row)?
                .collect::<rusqlite::Result<_>>()?,
            Engine::Pg(pg) => pg.query(SELECT, vec![])?.iter().map(pg_raw_row).collect(),
        };
        rows.into_iter().map(from_raw).collect()
    }

    /// The suppression of one address, if any.
    pub fn suppression(&self, email: &str) -> Result<Option<Suppression>> {
        let key = address_key(email);
        let row = match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(
                    "SELECT address, suppressed_at, source, edition FROM suppressions WHERE address_key = ?1",
                )?
                .query_row([key], raw_row)
                .optional()?,
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT address, suppressed_at, source, edition FROM suppressions WHERE address_key = $1",
                    pg_params![key],
                )?
                .as_ref()
                .map(pg_raw_row),
        };
        row.map(from_raw).transpose()
    }
}

type RawRow = (String, String, String, Option<String>);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn pg_raw_row(r: &tokio_postgres::Row) -> RawRow {
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

fn from_raw((address, at, source, edition): RawRow) -> Result<Suppression> {
    Ok(Suppression {
        address,
        suppressed_at: DateTime::parse_from_rfc3339(&at)?.with_timezone(&Utc),
        source: SuppressionSource::parse(&source).unwrap_or(SuppressionSource::Manual),
        edition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppress_is_idempotent_and_case_insensitive() {
        let store = Store::in_memory().unwrap();
        let s = Suppression {
            address: "Ann@Example.org".into(),
            suppressed_at: crate::clock::now(),
            source: SuppressionSource::OneClick,
            edition: Some("e1".into()),
        };
        assert!(store.suppress(&s).unwrap());
        assert!(!store.suppress(&s).unwrap());
        assert!(store.is_suppressed("ann@example.ORG").unwrap());
        let found = store.suppression("ANN@example.org").unwrap().unwrap();
        assert_eq!(found.source, SuppressionSource::OneClick);
        assert_eq!(found.edition.as_deref(), Some("e1"));
        assert_eq!(store.suppressions().unwrap().len(), 1);
        assert!(store.resubscribe("ANN@example.org").unwrap());
        assert!(!store.is_suppressed("ann@example.org").unwrap());
        assert!(!store.resubscribe("ann@example.org").unwrap());
    }
}
