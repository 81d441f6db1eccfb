//! Tracked links and clicks (`[tracking]`, docs/tracking.md): each edition's link
//! table (what a token redirects to), the clicks counted while the edition's reporting
//! window is open, the per-edition key that makes a click's client label, and, once
//! the window closes, the unique counts that outlive the labels.

use super::{Store, REAL};
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
    edition   TEXT PRIMARY KEY,
    client_key TEXT,
    closed_at TEXT
);
CREATE TABLE IF NOT EXISTS click_uniques (
    edition TEXT NOT NULL,
    scope   TEXT NOT NULL,
    uniques INTEGER NOT NULL,
    PRIMARY KEY (edition, scope)
);
";
// `clicks.machine` is NULL for a reader's click, else why it is a machine's (`head`,
// `prefetch`, `scanner`, `burst`). `clicks.client` and `click_windows.client_key` are
// NULL once the window is closed; `click_uniques.scope` is a link token or `sponsor`
// (readers who clicked any sponsor link).

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
    /// Records the tracked links of `edition` (a send does, before its first message);
    /// a token already recorded keeps its destination.
    pub fn record_links(
        &self,
        edition: &str,
        links: &[TrackedLink],
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.transaction(|s| {
            let mut stmt = s.conn.prepare_cached(
                "INSERT INTO tracked_links (token, edition, position, section, url, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (token) DO NOTHING",
            )?;
            for l in links {
                stmt.execute(params![
                    l.token,
                    edition,
                    l.position as i64,
                    l.section.as_str(),
                    l.url,
                    ts(at)
                ])?;
            }
            Ok(())
        })
        .context("cannot record the edition's tracked links")
    }

    /// The edition and destination of a recorded token.
    pub fn tracked_link(&self, token: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT edition, url FROM tracked_links WHERE token = ?1")?
            .query_row([token], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The tracked links of `edition`, in edition order.
    pub fn links_of(&self, edition: &str) -> Result<Vec<TrackedLink>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT token, position, section, url FROM tracked_links WHERE edition = ?1
             ORDER BY position, recorded_at, token",
        )?;
        let rows = stmt.query_map([edition], |r| {
            let section: String = r.get(2)?;
            Ok(TrackedLink {
                token: r.get(0)?,
                position: r.get::<_, i64>(1)? as usize,
                section: TrackedSection::parse(&section).unwrap_or(TrackedSection::Essay),
                url: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Editions with tracked links and a real send started at or after `since`, oldest
    /// first, with the send's start.
    pub fn tracked_editions(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, DateTime<Utc>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.edition, s.started_at FROM sends s
             WHERE s.namespace = ?1 AND EXISTS (SELECT 1 FROM tracked_links l WHERE l.edition = s.edition)
             ORDER BY s.started_at, s.edition",
        )?;
        let rows = stmt.query_map([REAL], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (edition, started) = row?;
            let started = parse_ts(&started);
            if since.is_none_or(|s| started >= s) {
                out.push((edition, started));
            }
        }
        Ok(out)
    }

    /// The reporting window of `edition`: none before its real send started.
    pub fn click_window(&self, edition: &str) -> Result<Option<ClickWindow>> {
        let started: Option<String> = self
            .conn
            .prepare_cached("SELECT started_at FROM sends WHERE edition = ?1 AND namespace = ?2")?
            .query_row([edition, REAL], |r| r.get(0))
            .optional()?;
        let Some(started) = started else {
            return Ok(None);
        };
        let closed: Option<Option<String>> = self
            .conn
            .prepare_cached("SELECT closed_at FROM click_windows WHERE edition = ?1")?
            .query_row([edition], |r| r.get(0))
            .optional()?;
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
        self.conn
            .prepare_cached(
                "INSERT INTO click_windows (edition, client_key) VALUES (?1, ?2)
                 ON CONFLICT (edition) DO NOTHING",
            )?
            .execute([edition, &b64.encode(fresh)])?;
        let key: Option<String> = self
            .conn
            .prepare_cached("SELECT client_key FROM click_windows WHERE edition = ?1")?
            .query_row([edition], |r| r.get(0))?;
        Ok(key.and_then(|k| b64.decode(k).ok()))
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
        self.conn
            .prepare_cached(
                "INSERT INTO clicks (token, edition, at, machine, client) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![token, edition, ts(at), machine, client])?;
        Ok(())
    }

    /// The clicks counted for `edition`, in time order.
    pub fn clicks(&self, edition: &str) -> Result<Vec<Click>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, token, at, machine, client FROM clicks WHERE edition = ?1 ORDER BY at, id",
        )?;
        let rows = stmt.query_map([edition], |r| {
            Ok(Click {
                id: r.get(0)?,
                token: r.get(1)?,
                at: parse_ts(&r.get::<_, String>(2)?),
                machine: r.get(3)?,
                client: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The unique counts kept when `edition`'s window closed (scope → readers).
    pub fn click_uniques(&self, edition: &str) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT scope, uniques FROM click_uniques WHERE edition = ?1")?;
        let rows = stmt.query_map([edition], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Editions whose window is open (a key exists), with their send's start.
    pub fn open_click_windows(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT w.edition, s.started_at FROM click_windows w
             JOIN sends s ON s.edition = w.edition AND s.namespace = ?1
             WHERE w.closed_at IS NULL",
        )?;
        let rows = stmt.query_map([REAL], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (edition, started) = row?;
            out.push((edition, parse_ts(&started)));
        }
        Ok(out)
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
        self.transaction(|s| {
            let mut burst = s
                .conn
                .prepare_cached("UPDATE clicks SET machine = 'burst' WHERE id = ?1 AND machine IS NULL")?;
            for id in bursts {
                burst.execute([id])?;
            }
            let mut unique = s.conn.prepare_cached(
                "INSERT INTO click_uniques (edition, scope, uniques) VALUES (?1, ?2, ?3)
                 ON CONFLICT (edition, scope) DO UPDATE SET uniques = excluded.uniques",
            )?;
            for (scope, n) in uniques {
                unique.execute(params![edition, scope, *n as i64])?;
            }
            // Minutes are enough for the 48-hour chart.
            s.conn.execute(
                "UPDATE clicks SET client = NULL, at = substr(at, 1, 16) || ':00.000Z' WHERE edition = ?1",
                [edition],
            )?;
            s.conn.execute(
                "INSERT INTO click_windows (edition, client_key, closed_at) VALUES (?1, NULL, ?2)
                 ON CONFLICT (edition) DO UPDATE SET client_key = NULL, closed_at = excluded.closed_at",
                [edition, &ts(at)],
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
