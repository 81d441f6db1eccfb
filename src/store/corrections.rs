//! What a correction needs from the journal: who accepted the edition it corrects.

use super::{NewRecipient, Store};
use anyhow::Result;

impl Store {
    /// The recipients of `edition` the relay accepted (`sent`), in journal order, with
    /// their name and fields. This is the one place that defines "delivered": when
    /// bounces after acceptance are recorded, they are taken out here.
    pub fn accepted_recipients(&self, edition: &str, namespace: &str) -> Result<Vec<NewRecipient>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT address, name, fields FROM journal
             WHERE edition = ?1 AND namespace = ?2 AND state = 'sent' ORDER BY id",
        )?;
        let rows = stmt.query_map([edition, namespace], |r| {
            Ok(NewRecipient {
                address: r.get(0)?,
                name: r.get(1)?,
                fields: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
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
        let accepted: Vec<String> = store
            .accepted_recipients("e1", REAL)
            .unwrap()
            .into_iter()
            .map(|r| r.address)
            .collect();
        assert_eq!(accepted, ["a@x.org", "c@x.org"]);
        assert!(store.accepted_recipients("e2", REAL).unwrap().is_empty());
    }
}
