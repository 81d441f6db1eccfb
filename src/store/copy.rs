//! Moving rows between stores, whatever their engines: `brief store copy` (every
//! table, SQLite → PostgreSQL and back) and a dry run's in-memory copy of one send.
//!
//! Both engines hold the same columns with the same meaning (see `mod.rs`), so a row is
//! copied as it is. [`TABLES`] lists every table and column that is state; a new table
//! is added here too. Not copied: SQLite's `progress` (the high-water mark of that
//! file) and PostgreSQL's `workers`/`claimed_by`/`claim` (who is sending right now).

use super::{Engine, Store};
use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use std::error::Error;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// Every table of the state, with the columns copied, in an order that respects the
/// journal's indexes (the journal before what refers to it).
pub(super) const TABLES: &[(&str, &[&str])] = &[
    (
        "suppressions",
        &[
            "address_key",
            "address",
            "suppressed_at",
            "source",
            "edition",
        ],
    ),
    (
        "sends",
        &[
            "edition",
            "namespace",
            "started_at",
            "frozen_at",
            "finished_at",
            "invalid",
            "duplicates",
        ],
    ),
    (
        "journal",
        &[
            "id",
            "edition",
            "namespace",
            "address_key",
            "address",
            "name",
            "fields",
            "state",
            "attempts",
            "first_attempt_at",
            "next_attempt_at",
            "updated_at",
            "reply",
            "message_id",
        ],
    ),
    ("reports", &["edition", "kind", "state", "sent_at"]),
    (
        "bounce_events",
        &[
            "event_key",
            "address_key",
            "edition",
            "kind",
            "status",
            "diagnostic",
            "at",
            "counted",
        ],
    ),
    (
        "suppression_reasons",
        &["address_key", "kind", "edition", "status", "diagnostic"],
    ),
    (
        "provider_events",
        &[
            "provider",
            "event_id",
            "kind",
            "recipient",
            "address_key",
            "status",
            "diagnostic",
            "message_id",
            "occurred_at",
            "received_at",
            "edition",
            "outcome",
        ],
    ),
    ("provider_nonces", &["provider", "nonce", "seen_at"]),
    (
        "tracked_links",
        &[
            "token",
            "edition",
            "position",
            "section",
            "url",
            "recorded_at",
        ],
    ),
    (
        "clicks",
        &["id", "token", "edition", "at", "machine", "client"],
    ),
    ("click_windows", &["edition", "client_key", "closed_at"]),
    ("click_uniques", &["edition", "scope", "uniques"]),
    (
        "readers",
        &[
            "address_key",
            "address",
            "name",
            "fields",
            "confirmed_at",
            "updated_at",
        ],
    ),
    ("memberships", &["list", "address_key", "added_at"]),
    ("consents", &["address_key", "at", "form", "lists", "text"]),
    (
        "pending_signups",
        &[
            "nonce",
            "address_key",
            "client",
            "lists",
            "created_at",
            "expires_at",
        ],
    ),
    (
        "signup_mails",
        &[
            "tag",
            "address_key",
            "address",
            "kind",
            "subject",
            "body",
            "state",
            "attempts",
            "created_at",
            "updated_at",
            "reply",
        ],
    ),
    ("spent_challenges", &["challenge", "expires_at"]),
    ("signup_stats", &["id", "answered", "last_at"]),
];

/// One column's value: both engines store only integers and text.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) if *ty == Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
            Value::Int(n) => n.to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::INT4, Type::TEXT, Type::VARCHAR].contains(ty)
    }

    to_sql_checked!();
}

/// Which rows of a table: all, or one send's (tables with edition and namespace).
#[derive(Clone, Copy)]
enum Rows<'a> {
    All,
    Send(&'a str, &'a str),
}

impl Store {
    fn read_rows(&self, table: &str, columns: &[&str], rows: Rows<'_>) -> Result<Vec<Vec<Value>>> {
        let list = columns.join(", ");
        match &self.engine {
            Engine::Sqlite(db) => {
                let (filter, params): (&str, Vec<String>) = match rows {
                    Rows::All => ("", vec![]),
                    Rows::Send(e, n) => (
                        "WHERE edition = ?1 AND namespace = ?2",
                        vec![e.into(), n.into()],
                    ),
                };
                let mut stmt = db.conn.prepare(&format!(
                    "SELECT {list} FROM {table} {filter} ORDER BY rowid"
                ))?;
                let out = stmt
                    .query_map(rusqlite::params_from_iter(params), |r| {
                        (0..columns.len())
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => Value::Null,
                                    rusqlite::types::ValueRef::Integer(n) => Value::Int(n),
                                    v => Value::Text(v.as_str()?.to_string()),
                                })
                            })
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(out)
            }
            Engine::Pg(pg) => {
                let order = if table == "provider_events" {
                    "seq"
                } else {
                    "1"
                };
                let (filter, params) = match rows {
                    Rows::All => ("", vec![]),
                    Rows::Send(e, n) => (
                        "WHERE edition = $1 AND namespace = $2",
                        super::pg::pg_params![e.to_string(), n.to_string()],
                    ),
                };
                let order = if table == "journal" { "id" } else { order };
                let rows = pg.query(
                    &format!("SELECT {list} FROM {table} {filter} ORDER BY {order}"),
                    params,
                )?;
                rows.iter()
                    .map(|r| {
                        (0..columns.len())
                            .map(|i| {
                                let ty = r.columns()[i].type_();
                                Ok(if *ty == Type::INT8 {
                                    r.try_get::<_, Option<i64>>(i)?
                                        .map_or(Value::Null, Value::Int)
                                } else if *ty == Type::INT4 {
                                    r.try_get::<_, Option<i32>>(i)?
                                        .map_or(Value::Null, |n| Value::Int(n.into()))
                                } else {
                                    r.try_get::<_, Option<String>>(i)?
                                        .map_or(Value::Null, Value::Text)
                                })
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect()
            }
        }
    }

    fn write_rows(&self, table: &str, columns: &[&str], rows: Vec<Vec<Value>>) -> Result<()> {
        let list = columns.join(", ");
        match &self.engine {
            Engine::Sqlite(db) => {
                let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
                let mut stmt = db.conn.prepare_cached(&format!(
                    "INSERT INTO {table} ({list}) VALUES ({})",
                    marks.join(", ")
                ))?;
                for row in rows {
                    stmt.execute(rusqlite::params_from_iter(row.into_iter().map(
                        |v| match v {
                            Value::Null => rusqlite::types::Value::Null,
                            Value::Int(n) => rusqlite::types::Value::Integer(n),
                            Value::Text(s) => rusqlite::types::Value::Text(s),
                        },
                    )))?;
                }
                Ok(())
            }
            Engine::Pg(pg) => {
                // Many rows per statement, well under PostgreSQL's 65,535 parameters.
                let per_statement = (30_000 / columns.len()).max(1);
                let mut rows = rows.into_iter().peekable();
                while rows.peek().is_some() {
                    let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_statement).collect();
                    let tuples: Vec<String> = (0..chunk.len())
                        .map(|r| {
                            let marks: Vec<String> = (1..=columns.len())
                                .map(|c| format!("${}", r * columns.len() + c))
                                .collect();
                            format!("({})", marks.join(", "))
                        })
                        .collect();
                    let params: Vec<super::pg::Param> = chunk
                        .into_iter()
                        .flatten()
                        .map(|v| Box::new(v) as super::pg::Param)
                        .collect();
                    pg.execute(
                        &format!("INSERT INTO {table} ({list}) VALUES {}", tuples.join(", ")),
                        params,
                    )?;
                }
                if table == "journal" {
                    pg.execute(super::pg_journal::INDEX_MESSAGE_IDS, vec![])?;
                }
                if table == "journal" || table == "clicks" {
                    // New rows continue after the copied ids.
                    pg.execute(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                                           coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                        ),
                        vec![],
                    )?;
                }
                Ok(())
            }
        }
    }

    fn count_rows(&self, table: &str) -> Result<i64> {
        let sql = format!("SELECT count(*) FROM {table}");
        Ok(match &self.engine {
            Engine::Sqlite(db) => db.conn.query_row(&sql, [], |r| r.get(0))?,
            Engine::Pg(pg) => pg.query_one(&sql, vec![])?.get(0),
        })
    }

    /// Rows per table, for `brief store copy`'s summary and its refusal of a target
    /// that already holds state.
    pub fn table_counts(&self) -> Result<Vec<(&'static str, i64)>> {
        TABLES
            .iter()
            .map(|(t, _)| Ok((*t, self.count_rows(t)?)))
            .collect()
    }

    /// Copies every table of this store into `target`, in one transaction on the
    /// target: all or nothing. A target that holds any state is refused unless
    /// `replace` (its rows are deleted first). Returns the rows copied per table.
    pub fn copy_to(&self, target: &Store, replace: bool) -> Result<Vec<(&'static str, i64)>> {
        let held: Vec<_> = target
            .table_counts()?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        if !held.is_empty() && !replace {
            let list: Vec<String> = held.iter().map(|(t, n)| format!("{t}: {n}")).collect();
            bail!(
                "the target {} is not empty ({}): nothing was copied. Copy into an empty store, or pass --replace to delete what it holds first",
                target.name(),
                list.join(", ")
            );
        }
        target.transaction(|target| {
            if replace {
                for (table, _) in TABLES.iter().rev() {
                    let sql = format!("DELETE FROM {table}");
                    match &target.engine {
                        Engine::Sqlite(db) => {
                            db.conn.execute(&sql, [])?;
                        }
                        Engine::Pg(pg) => {
                            pg.execute(&sql, vec![])?;
                        }
                    }
                }
            }
            // One transaction on the source too: on SQLite a snapshot no sender changes.
            self.transaction(|source| {
                let mut copied = Vec::new();
                for (table, columns) in TABLES {
                    let rows = source
                        .read_rows(table, columns, Rows::All)
                        .with_context(|| format!("cannot read {table} from {}", source.name()))?;
                    let n = rows.len() as i64;
                    target
                        .write_rows(table, columns, rows)
                        .with_context(|| format!("cannot write {table} to {}", target.name()))?;
                    copied.push((*table, n));
                }
                Ok(copied)
            })
        })
    }
}

/// A dry run's copy: the suppression list and one send's record and journal.
pub(super) fn one_send(
    source: &Store,
    target: &Store,
    edition: &str,
    namespace: &str,
) -> Result<()> {
    for (table, columns) in TABLES {
        let rows = match *table {
            "suppressions" => Rows::All,
            "sends" | "journal" => Rows::Send(edition, namespace),
            _ => continue,
        };
        target.write_rows(table, columns, source.read_rows(table, columns, rows)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRecipient, State, Suppression, SuppressionSource, Update, REAL};

    #[test]
    fn every_table_is_copied_and_a_non_empty_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let from = Store::open(&dir.path().join("a.db")).unwrap();
        let now = crate::clock::now();
        from.freeze(
            "e1",
            REAL,
            now,
            &mut ["a@x.org", "b@x.org"].into_iter().map(|a| NewRecipient {
                address: a.into(),
                name: "N".into(),
                fields: "{}".into(),
            }),
            &mut || 1,
        )
        .unwrap();
        let due = from.due("e1", REAL, 0, now, false, 5).unwrap();
        let mut sent = Update::new(due[0].id, State::Sent, now);
        sent.message_id = Some("<m@x.org>".into());
        from.apply(&[sent]).unwrap();
        from.suppress(&Suppression {
            address: "b@x.org".into(),
            suppressed_at: now,
            source: SuppressionSource::Manual,
            edition: None,
        })
        .unwrap();
        let link = crate::tracking::TrackedLink {
            token: "t0".into(),
            position: 0,
            section: crate::config::TrackedSection::Sponsor,
            url: "https://acme.example/".into(),
        };
        from.record_links("e1", &[link], now).unwrap();
        from.click_key("e1").unwrap();
        from.record_click("t0", "e1", now, None, "label").unwrap();
        let to = Store::open(&dir.path().join("b.db")).unwrap();
        let copied = from.copy_to(&to, false).unwrap();
        assert!(copied.contains(&("journal", 2)) && copied.contains(&("suppressions", 1)));
        assert!(copied.contains(&("tracked_links", 1)) && copied.contains(&("clicks", 1)));
        assert_eq!(to.clicks("e1").unwrap(), from.clicks("e1").unwrap());
        assert_eq!(to.click_key("e1").unwrap(), from.click_key("e1").unwrap());
        assert_eq!(
            to.counts("e1", REAL).unwrap(),
            from.counts("e1", REAL).unwrap()
        );
        assert_eq!(
            to.send_by_message_id("m@x.org").unwrap(),
            Some(("e1".into(), "a@x.org".into()))
        );
        let err = from.copy_to(&to, false).unwrap_err().to_string();
        assert!(
            err.contains("is not empty (suppressions: 1, sends: 1, journal: 2"),
            "{err}"
        );
        from.copy_to(&to, true).unwrap();
        assert_eq!(to.table_counts().unwrap(), from.table_counts().unwrap());
    }
}
