//! What the editors were last told about each edition: one remembered state per
//! (edition, kind), so a cron job that runs every five minutes does not mail the same
//! news every five minutes.

use super::pg::pg_params;
use super::{Engine, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    edition  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    state    TEXT NOT NULL,
    sent_at  TEXT NOT NULL,
    PRIMARY KEY (edition, kind)
);";

pub(super) const PG_SCHEMA: &str = "
CREATE TABLE reports (
    edition  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    state    TEXT NOT NULL,
    sent_at  TEXT NOT NULL,
    PRIMARY KEY (edition, kind)
);";

/// What a report is about; one remembered state per edition and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// How a send went (finished, or stopped with recipients left).
    Send,
    /// The edition failed its checks and was not sent.
    Check,
    /// The edition was more than `max_lateness` late and was not sent.
    Late,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Send => "send",
            ReportKind::Check => "check",
            ReportKind::Late => "late",
        }
    }
}

impl Store {
    /// The state last reported for this edition and kind, if any.
    pub fn reported(&self, edition: &str, kind: ReportKind) -> Result<Option<String>> {
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .query_row(
                    "SELECT state FROM reports WHERE edition = ?1 AND kind = ?2",
                    params![edition, kind.as_str()],
                    |r| r.get(0),
                )
                .optional()?,
            Engine::Pg(pg) => pg
                .query_opt(
                    "SELECT state FROM reports WHERE edition = $1 AND kind = $2",
                    pg_params![edition.to_string(), kind.as_str()],
                )?
                .map(|r| r.get(0)),
        })
    }

    /// Remembers that `state` was reported at `at`. False when it already was (by
    /// another sender of a shared store, since this one looked): the report must not
    /// go out twice.
    pub fn remember_report(
        &self,
        edition: &str,
        kind: ReportKind,
        state: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let changed = match &self.engine {
            Engine::Sqlite(db) => db.conn.execute(
                "INSERT INTO reports (edition, kind, state, sent_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (edition, kind) DO UPDATE SET state = excluded.state, sent_at = excluded.sent_at
                 WHERE reports.state <> excluded.state",
                params![edition, kind.as_str(), state, at],
            )? as u64,
            Engine::Pg(pg) => pg.execute(
                "INSERT INTO reports (edition, kind, state, sent_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (edition, kind) DO UPDATE SET state = excluded.state, sent_at = excluded.sent_at
                 WHERE reports.state <> excluded.state",
                pg_params![edition.to_string(), kind.as_str(), state.to_string(), at],
            )?,
        };
        Ok(changed == 1)
    }

    /// Forgets what was reported for this edition and kind.
    pub fn forget_report(&self, edition: &str, kind: ReportKind) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(db) => db.conn.execute(
                "DELETE FROM reports WHERE edition = ?1 AND kind = ?2",
                params![edition, kind.as_str()],
            )? as u64,
            Engine::Pg(pg) => pg.execute(
                "DELETE FROM reports WHERE edition = $1 AND kind = $2",
                pg_params![edition.to_string(), kind.as_str()],
            )?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_remembered_per_edition_and_kind() {
        let s = Store::in_memory().unwrap();
        let at = DateTime::<Utc>::default();
        assert_eq!(s.reported("e1", ReportKind::Check).unwrap(), None);
        assert!(s.remember_report("e1", ReportKind::Check, "x", at).unwrap());
        // The same state again is no new report: a second sender does not mail it.
        assert!(!s.remember_report("e1", ReportKind::Check, "x", at).unwrap());
        assert_eq!(
            s.reported("e1", ReportKind::Check).unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(s.reported("e1", ReportKind::Late).unwrap(), None);
        assert_eq!(s.reported("e2", ReportKind::Check).unwrap(), None);
        s.remember_report("e1", ReportKind::Check, "y", at).unwrap();
        assert_eq!(
            s.reported("e1", ReportKind::Check).unwrap().as_deref(),
            Some("y")
        );
        s.forget_report("e1", ReportKind::Check).unwrap();
        assert_eq!(s.reported("e1", ReportKind::Check).unwrap(), None);
    }
}
