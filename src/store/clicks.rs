//! Tracked links and clicks (`[tracking]`, docs/tracking.md): each edition's link
//! table (what a token redirects to), the clicks counted while the edition's reporting
//! window is open, the per-edition key that makes a click's client label, and, once
//! the window closes, the unique counts that outlive the labels.
//!
//! Every statement is written once with `?N` and run on PostgreSQL as `$N` ([`pg`]).

use super::pg::{pg_params, Param};
use super::{Engine, Store, REAL};
use crate::config::TrackedSection;
use crate::tracking::TrackedLink;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tracked_links (
    token       TEXT PRIMARY KEY,
    edition     TEXT NOT NULL,
    position    INTEGER NOT NULL,
    section     TEXT NOT NULL,
    url         TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tracked_links_edition ON tracked_links (edition);
CREATE TABLE IF NOT EXISTS clicks (
    id      INTEGER PRIMARY KEY,
    token   TEXT NOT NULL,
    edition TEXT NOT NULL,
    at      TEXT NOT NULL,
    machine TEXT,
    client  TEXT
);
CREATE INDEX IF NOT EXISTS clicks_edition ON clicks (edition, at);
CREATE TABLE IF NOT EXISTS click_windows (
    edition    TEXT PRIMARY KEY,
    client_key TEXT,
    closed_at  TEXT
);
CREATE TABLE IF NOT EXISTS click_uniques (
    edition TEXT NOT NULL,
    scope   TEXT NOT NULL,
    uniques INTEGER NOT NULL,
    PRIMARY KEY (edition, scope)
);
";

pub(super) const PG_SCHEMA: &str = "
CREATE TABLE tracked_links (
    token       TEXT PRIMARY KEY,
    edition     TEXT NOT NULL,
    position    BIGINT NOT NULL,
    section     TEXT NOT NULL,
    url         TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX tracked_links_edition ON tracked_links (edition);
CREATE TABLE clicks (
    id      BIGSERIAL PRIMARY KEY,
    token   TEXT NOT NULL,
    edition TEXT NOT NULL,
    at      TEXT NOT NULL,
    machine TEXT,
    client  TEXT
);
CREATE INDEX clicks_edition ON clicks (edition, at);
CREATE TABLE click_windows (
    edition    TEXT PRIMARY KEY,
    client_key TEXT,
    closed_at  TEXT
);
CREATE TABLE click_uniques (
    edition TEXT NOT NULL,
    scope   TEXT NOT NULL,
    uniques BIGINT NOT NULL,
    PRIMARY KEY (edition, scope)
);
";
// `clicks.machine` is NULL for a reader's click, else why it is a machine's (`head`,
// `prefetch`, `scanner`, `burst`). `clicks.client` and `click_windows.client_key` are
// NULL once the window is closed; `click_uniques.scope` is a link token or `sponsor`
// (readers who clicked any sponsor link).

/// A statement written for SQLite (`?N`) as PostgreSQL writes it (`$N`).
fn pg(sql: &str) -> String {
    sql.replace('?', "$")
}

/// One click as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub id: i64,
    pub token: String,
    pub at: DateTime<Utc>,
    pub machine: Option<String>,
    /// The keyed label of the client (address and user agent); none after the window.
    pub client: Option<String>,
}

/// An edition's reporting window as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickWindow {
    /// When the real send started; the window runs from here.
    pub started_at: DateTime<Utc>,
    pub closed: bool,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

impl Store {
    /// Runs a statement that changes rows on either engine; the rows changed.
    fn click_execute(
        &self,
        sql: &str,
        sqlite: &[&dyn rusqlite::ToSql],
        pgp: Vec<Param>,
    ) -> Result<u64> {
        Ok(match &self.engine {
            Engine::Sqlite(db) => db.conn.prepare_cached(sql)?.execute(sqlite)? as u64,
            Engine::Pg(p) => p.execute(&pg(sql), pgp)?,
        })
    }

    /// Records the tracked links of `edition` (a send does, before its first message);
    /// a token already recorded keeps its destination.
    pub fn record_links(
        &self,
        edition: &str,
        links: &[TrackedLink],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO tracked_links (token, edition, position, section, url, recorded_at)
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (token) DO NOTHING";
        self.transaction(|s| {
            for l in links {
                let position = l.position as i64;
                s.click_execute(
                    sql,
                    params![
                        l.token,
                        edition,
                        position,
                        l.section.as_str(),
                        l.url,
                        ts(at)
                    ],
                    pg_params![
                        l.token.clone(),
                        edition.to_string(),
                        position,
                        l.section.as_str(),
                        l.url.clone(),
                        ts(at)
                    ],
                )?;
            }
            Ok(())
        })
        .context("cannot record the edition's tracked links")
    }

    /// The edition and destination of a recorded token.
    pub fn tracked_link(&self, token: &str) -> Result<Option<(String, String)>> {
        let sql = "SELECT edition, url FROM tracked_links WHERE token = ?1";
        Ok(match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(sql)?
                .query_row([token], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?,
            Engine::Pg(p) => p
                .query_opt(&pg(sql), pg_params![token.to_string()])?
                .map(|r| (r.get(0), r.get(1))),
        })
    }

    /// The tracked links of `edition`, in edition order.
    pub fn links_of(&self, edition: &str) -> Result<Vec<TrackedLink>> {
        let sql = "SELECT token, position, section, url FROM tracked_links WHERE edition = ?1
                   ORDER BY position, recorded_at, token";
        let rows: Vec<(String, i64, String, String)> = match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(sql)?
                .query_map([edition], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?,
            Engine::Pg(p) => p
                .query(&pg(sql), pg_params![edition.to_string()])?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect(),
        };
        Ok(rows
            .into_iter()
            .map(|(token, position, section, url)| TrackedLink {
                token,
                position: position as usize,
                section: TrackedSection::parse(&section).unwrap_or(TrackedSection::Essay),
                url,
            })
            .collect())
    }

    /// Editions with tracked links and a real send started at or after `since`, oldest
    /// first, with the send's start.
    pub fn tracked_editions(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        let sql = "SELECT s.edition, s.started_at FROM sends s
                   WHERE s.namespace = ?1 AND EXISTS (SELECT 1 FROM tracked_links l WHERE l.edition = s.edition)
                   ORDER BY s.started_at, s.edition";
        let rows = self.edition_times(sql)?;
        Ok(rows
            .into_iter()
            .filter(|(_, started)| since.is_none_or(|s| *started >= s))
            .collect())
    }

    /// (edition, time) rows of a query whose one parameter is the real namespace.
    fn edition_times(&self, sql: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows: Vec<(String, String)> = match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(sql)?
                .query_map([REAL], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?,
            Engine::Pg(p) => p
                .query(&pg(sql), pg_params![REAL])?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        };
        Ok(rows.into_iter().map(|(e, t)| (e, parse_ts(&t))).collect())
    }

    /// A single optional text of a query with one text parameter (`None` for no row).
    fn click_text(&self, sql: &str, a: &str, b: Option<&str>) -> Result<Option<Option<String>>> {
        Ok(match (&self.engine, b) {
            (Engine::Sqlite(db), None) => db
                .conn
                .prepare_cached(sql)?
                .query_row([a], |r| r.get(0))
                .optional()?,
            (Engine::Sqlite(db), Some(b)) => db
                .conn
                .prepare_cached(sql)?
                .query_row([a, b], |r| r.get(0))
                .optional()?,
            (Engine::Pg(p), None) => p
                .query_opt(&pg(sql), pg_params![a.to_string()])?
                .map(|r| r.get(0)),
            (Engine::Pg(p), Some(b)) => p
                .query_opt(&pg(sql), pg_params![a.to_string(), b.to_string()])?
                .map(|r| r.get(0)),
        })
    }

    /// The reporting window of `edition`: none before its real send started.
    pub fn click_window(&self, edition: &str) -> Result<Option<ClickWindow>> {
        let started = self.click_text(
            "SELECT started_at FROM sends WHERE edition = ?1 AND namespace = ?2",
            edition,
            Some(REAL),
        )?;
        let Some(Some(started)) = started else {
            return Ok(None);
        };
        let closed = self.click_text(
            "SELECT closed_at FROM click_windows WHERE edition = ?1",
            edition,
            None,
        )?;
        Ok(Some(ClickWindow {
            started_at: parse_ts(&started),
            closed: closed.flatten().is_some(),
        }))
    }

    /// The key of `edition`'s client labels, made (random) at its first click; none once
    /// the window is closed.
    pub fn click_key(&self, edition: &str) -> Result<Option<Vec<u8>>> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut fresh = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
            .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
        let fresh = b64.encode(fresh);
        self.click_execute(
            "INSERT INTO click_windows (edition, client_key) VALUES (?1, ?2)
             ON CONFLICT (edition) DO NOTHING",
            params![edition, fresh],
            pg_params![edition.to_string(), fresh.clone()],
        )?;
        let key = self.click_text(
            "SELECT client_key FROM click_windows WHERE edition = ?1",
            edition,
            None,
        )?;
        Ok(key.flatten().and_then(|k| b64.decode(k).ok()))
    }

    /// Records one click.
    pub fn record_click(
        &self,
        token: &str,
        edition: &str,
        at: DateTime<Utc>,
        machine: Option<&str>,
        client: &str,
    ) -> Result<()> {
        self.click_execute(
            "INSERT INTO clicks (token, edition, at, machine, client) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token, edition, ts(at), machine, client],
            pg_params![
                token.to_string(),
                edition.to_string(),
                ts(at),
                machine.map(str::to_string),
                client.to_string()
            ],
        )?;
        Ok(())
    }

    /// The clicks counted for `edition`, in time order.
    pub fn clicks(&self, edition: &str) -> Result<Vec<Click>> {
        let sql =
            "SELECT id, token, at, machine, client FROM clicks WHERE edition = ?1 ORDER BY at, id";
        type Row = (i64, String, String, Option<String>, Option<String>);
        let rows: Vec<Row> = match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(sql)?
                .query_map([edition], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<_>>()?,
            Engine::Pg(p) => p
                .query(&pg(sql), pg_params![edition.to_string()])?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
                .collect(),
        };
        Ok(rows
            .into_iter()
            .map(|(id, token, at, machine, client)| Click {
                id,
                token,
                at: parse_ts(&at),
                machine,
                client,
            })
            .collect())
    }

    /// The unique counts kept when `edition`'s window closed (scope → readers).
    pub fn click_uniques(&self, edition: &str) -> Result<Vec<(String, u64)>> {
        let sql = "SELECT scope, uniques FROM click_uniques WHERE edition = ?1";
        let rows: Vec<(String, i64)> = match &self.engine {
            Engine::Sqlite(db) => db
                .conn
                .prepare_cached(sql)?
                .query_map([edition], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?,
            Engine::Pg(p) => p
                .query(&pg(sql), pg_params![edition.to_string()])?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        };
        Ok(rows.into_iter().map(|(s, n)| (s, n as u64)).collect())
    }

    /// Editions whose window is open (a key exists), with their send's start.
    pub fn open_click_windows(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        self.edition_times(
            "SELECT w.edition, s.started_at FROM click_windows w
             JOIN sends s ON s.edition = w.edition AND s.namespace = ?1
             WHERE w.closed_at IS NULL",
        )
    }

    /// Closes `edition`'s window, all at once: the clicks in `bursts` become machine
    /// clicks, the unique counts are kept, and the client labels, the key and the
    /// seconds of every click time are dropped.
    pub fn close_click_window(
        &self,
        edition: &str,
        bursts: &[i64],
        uniques: &[(String, u64)],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let e = || edition.to_string();
        self.transaction(|s| {
            for id in bursts {
                s.click_execute(
                    "UPDATE clicks SET machine = 'burst' WHERE id = ?1 AND machine IS NULL",
                    params![id],
                    pg_params![*id],
                )?;
            }
            for (scope, n) in uniques {
                let n = *n as i64;
                s.click_execute(
                    "INSERT INTO click_uniques (edition, scope, uniques) VALUES (?1, ?2, ?3)
                     ON CONFLICT (edition, scope) DO UPDATE SET uniques = excluded.uniques",
                    params![edition, scope, n],
                    pg_params![e(), scope.clone(), n],
                )?;
            }
            // Minutes are enough for the 48-hour chart.
            s.click_execute(
                "UPDATE clicks SET client = NULL, at = substr(at, 1, 16) || ':00.000Z' WHERE edition = ?1",
                params![edition],
                pg_params![e()],
            )?;
            s.click_execute(
                "INSERT INTO click_windows (edition, client_key, closed_at) VALUES (?1, NULL, ?2)
                 ON CONFLICT (edition) DO UPDATE SET client_key = NULL, closed_at = excluded.closed_at",
                params![edition, ts(at)],
                pg_params![e(), ts(at)],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(token: &str, position: usize) -> TrackedLink {
        TrackedLink {
            token: token.into(),
            position,
            section: TrackedSection::Sponsor,
            url: format!("https://acme.example/{position}"),
        }
    }

    #[test]
    fn a_recorded_token_keeps_its_destination() {
        let store = Store::in_memory().unwrap();
        let now = crate::clock::now();
        store
            .record_links("e1", &[link("t0", 0), link("t1", 1)], now)
            .unwrap();
        let mut moved = link("t0", 0);
        moved.url = "https://evil.example/".into();
        store.record_links("e1", &[moved], now).unwrap();
        assert_eq!(
            store.tracked_link("t0").unwrap(),
            Some(("e1".into(), "https://acme.example/0".into()))
        );
        assert_eq!(store.tracked_link("nope").unwrap(), None);
        assert_eq!(store.links_of("e1").unwrap().len(), 2);
    }

    #[test]
    fn closing_a_window_drops_labels_and_key() {
        let store = Store::in_memory().unwrap();
        let now = crate::clock::now();
        store.record_links("e1", &[link("t0", 0)], now).unwrap();
        let key = store.click_key("e1").unwrap().unwrap();
        assert_eq!(
            store.click_key("e1").unwrap().unwrap(),
            key,
            "one key per edition"
        );
        store.record_click("t0", "e1", now, None, "label").unwrap();
        let id = store.clicks("e1").unwrap()[0].id;
        store
            .close_click_window("e1", &[id], &[("t0".into(), 0)], now)
            .unwrap();
        let after = store.clicks("e1").unwrap();
        assert_eq!(after[0].client, None);
        assert_eq!(after[0].machine.as_deref(), Some("burst"));
        assert_eq!(after[0].at.timestamp() % 60, 0);
        assert_eq!(store.click_key("e1").unwrap(), None);
        assert_eq!(
            store.click_uniques("e1").unwrap(),
            vec![("t0".to_string(), 0)]
        );
    }
}
