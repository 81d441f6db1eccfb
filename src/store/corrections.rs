//! What a correction needs from the journal: who accepted the edition it corrects.

use super::pg::pg_params;
use super::{Engine, NewRecipient, Store};
use anyhow::Result;

impl Store {
    /// The recipients who got `edition`: accepted by the relay (`sent`), minus those
    /// that hard-bounced for it after acceptance (a returned DSN or a provider's event,
    /// both recorded by the bounce policy, also after a resubscribe), in journal order,
    /// with their name and fields. This is the one place that defines "delivered".
    pub fn accepted_recipients(&self, edition: &str, namespace: &str) -> Result<Vec<NewRecipient>> {
        const NOT_BOUNCED: &str =
            "AND NOT EXISTS (SELECT 1 FROM bounce_events b WHERE b.edition = j.edition
                 AND b.address_key = j.address_key AND b.kind = 'hard')";
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => {
                let rows = pg.query(
                    &format!(
                        "SELECT j.address, j.name, j.fields FROM journal j
                         WHERE j.edition = $1 AND j.namespace = $2 AND j.state = 'sent' {NOT_BOUNCED}
                         ORDER BY j.id"
                    ),
                    pg_params![edition.to_string(), namespace.to_string()],
                )?;
                return Ok(rows
                    .iter()
                    .map(|r| NewRecipient {
                        address: r.get(0),
                        name: r.get(1),
                        fields: r.get(2),
                    })
                    .collect());
            }
        };
        // A store last written by an older brief (opened read-only) has no events table.
        let events: i64 = db.conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'bounce_events'",
            [],
            |r| r.get(0),
        )?;
        let bounced_after = if events == 1 { NOT_BOUNCED } else { "" };
        let mut stmt = db.conn.prepare_cached(&format!(
            "SELECT j.address, j.name, j.fields FROM journal j
             WHERE j.edition = ?1 AND j.namespace = ?2 AND j.state = 'sent' {bounced_after}
             ORDER BY j.id"
        ))?;
        let rows = stmt.query_map([edition, namespace], |r| {
            Ok(NewRecipient {
                address: r.get(0)?,
                name: r.get(1)?,
                fields: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// How many recipients got `edition`, counted as [`Store::accepted_recipients`]
    /// lists them (without loading them): the "delivered" of sponsor reports.
    pub fn delivered_count(&self, edition: &str, namespace: &str) -> Result<u64> {
        const NOT_BOUNCED: &str =
            "AND NOT EXISTS (SELECT 1 FROM bounce_events b WHERE b.edition = j.edition
                 AND b.address_key = j.address_key AND b.kind = 'hard')";
        let count = "SELECT count(*) FROM journal j WHERE j.edition = {e} AND j.namespace = {n} AND j.state = 'sent'";
        let n: i64 = match &self.engine {
            Engine::Pg(pg) => pg
                .query_one(
                    &format!(
                        "{} {NOT_BOUNCED}",
                        count.replace("{e}", "$1").replace("{n}", "$2")
                    ),
                    pg_params![edition.to_string(), namespace.to_string()],
                )?
                .get(0),
            Engine::Sqlite(db) => {
                // A store last written by an older brief (opened read-only) has no events table.
                let events: i64 = db.conn.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'bounce_events'",
                    [],
                    |r| r.get(0),
                )?;
                let bounced_after = if events == 1 { NOT_BOUNCED } else { "" };
                db.conn.query_row(
                    &format!(
                        "{} {bounced_after}",
                        count.replace("{e}", "?1").replace("{n}", "?2")
                    ),
                    [edition, namespace],
                    |r| r.get(0),
                )?
            }
        };
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{State, Update, REAL};

    #[test]
    fn only_accepted_recipients_of_the_real_send() {
        let store = Store::in_memory().unwrap();
        let people = ["a@x.org", "b@x.org", "c@x.org"].map(|a| NewRecipient {
            address: a.into(),
            name: String::new(),
            fields: "{}".into(),
        });
        store
            .freeze(
                "e1",
                REAL,
                crate::clock::now(),
                &mut people.clone().into_iter(),
                &mut || 0,
            )
            .unwrap();
        store
            .freeze(
                "e1",
                "test",
                crate::clock::now(),
                &mut people.into_iter(),
                &mut || 0,
            )
            .unwrap();
        let due = store
            .due("e1", REAL, 0, crate::clock::now(), false, 10)
            .unwrap();
        let states = [State::Sent, State::Bounced, State::Sent];
        let updates: Vec<Update> = due
            .iter()
            .zip(states)
            .map(|(e, s)| Update::new(e.id, s, crate::clock::now()))
            .collect();
        store.apply(&updates).unwrap();
        // A's message bounced after the relay accepted it (a returned DSN); C only
        // bounced softly, which does not make the edition undelivered.
        for (key, address, kind) in [("m1", "a@x.org", "hard"), ("m2", "c@x.org", "soft")] {
            store
                .record_bounce(&crate::store::BounceEvent {
                    key,
                    address,
                    edition: "e1",
                    kind,
                    status: Some("5.1.1"),
                    diagnostic: None,
                    at: crate::clock::now(),
                })
                .unwrap();
        }
        let accepted: Vec<String> = store
            .accepted_recipients("e1", REAL)
            .unwrap()
            .into_iter()
            .map(|r| r.address)
            .collect();
        assert_eq!(accepted, ["c@x.org"]);
        assert_eq!(store.delivered_count("e1", REAL).unwrap(), 1);
        assert!(store.accepted_recipients("e2", REAL).unwrap().is_empty());
    }
}
