//! The state store: the per-recipient journal, the suppression list, the memory of
//! the editor reports, bounces and provider events. Two engines:
//!
//! - SQLite, the embedded default (WAL mode, synchronous=FULL so a recorded answer
//!   survives a power cut; one sender per edition, under a file lock);
//! - PostgreSQL (`[state] url`), which several senders on several machines share.
//!
//! This folder is the only place with SQL. Callers see [`Store`] and its methods,
//! never a connection; inside, a `Store` holds one [`Engine`] or the other.
//!
//! **The pattern**, for every area file (`suppressions.rs`, `journal.rs`, ...): it
//! declares its tables twice, `SCHEMA` (SQLite, created on every open with `IF NOT
//! EXISTS`) and `PG_SCHEMA` (PostgreSQL, a step of the versioned migrations in
//! `pg.rs`); and each method matches on `self.engine` with the SQLite statement and
//! the PostgreSQL one side by side:
//!
//! ```text
//! match &self.engine {
//!     Engine::Sqlite(db) => db.conn.prepare_cached("... ?1 ...")?.execute(params![..])?,
//!     Engine::Pg(pg) => pg.execute("... $1 ...", pg_params![..])?,
//! }
//! ```
//!
//! One exception: the journal's PostgreSQL statements live in `pg_journal.rs`, because
//! there the journal is shared by several senders (claims, leases, the `workers`
//! table) and the SQLite journal (one sender) has no counterpart for most of it.
//!
//! Both engines store the same columns with the same meaning: times as RFC 3339 text
//! (so `<` on them orders in time, in both), counts as 64-bit integers, JSON as text.
//! That keeps the two statements of a method alike, and lets `brief store copy` move
//! every row as it is (`copy.rs` lists the tables; a new table goes there too). A new
//! PostgreSQL table is a new step appended to `pg::MIGRATIONS`, never an edit of a
//! released one.

mod bounces;
mod clicks;
mod copy;
mod corrections;
mod events;
mod journal;
mod lists;
mod mark;
mod pg;
mod pg_journal;
mod reports;
mod suppressions;

pub use bounces::{BounceCounts, BounceEvent, SuppressionReason};
pub use clicks::{Click, ClickWindow};
pub use events::ProviderEvent;
pub use journal::{Counts, Entry, NewRecipient, SendInfo, State, Update, REAL, TEST};
pub use lists::{erased_key, Addition, Consent, Delivery, ListCounts, Reader, SignupMail};
pub use mark::{HighWater, RolledBack};
pub use pg::check_url;
pub use pg_journal::Claimer;
pub use reports::ReportKind;
pub use suppressions::{Suppression, SuppressionSource};

use anyhow::{Context, Result};
use pg::Pg;
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a store lives (from `[state]`: see `Config::state_location`).
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres {
        url: String,
        password: Option<String>,
    },
}

/// The state store. One connection (SQLite) or one pool (PostgreSQL); callers that
/// share it across tasks wrap it.
pub struct Store {
    engine: Engine,
}

/// The database behind a [`Store`].
enum Engine {
    Sqlite(Sqlite),
    Pg(Pg),
}

struct Sqlite {
    conn: Connection,
    /// The database file (`None` in memory), for errors and the high-water mark.
    path: Option<PathBuf>,
    /// The journal's progress counter after this connection's last journal commit.
    progress: Cell<i64>,
}

impl Store {
    /// Opens (creating if needed) the store at `location`, and brings its schema up to
    /// date.
    pub fn connect(location: &Location) -> Result<Store> {
        match location {
            Location::Sqlite(path) => Store::open(path),
            Location::Postgres { url, password } => Ok(Store {
                engine: Engine::Pg(Pg::open(url, password.as_deref())?),
            }),
        }
    }

    /// The store `[state]` names.
    pub fn for_config(config: &crate::config::Config) -> Result<Store> {
        Store::connect(&config.state_location()?)
    }

    /// The store `[state]` names, for reading only, or `None` when there is none yet.
    pub fn existing_for_config(config: &crate::config::Config) -> Result<Option<Store>> {
        match config.state_location()? {
            Location::Sqlite(path) => Store::open_existing(&path),
            Location::Postgres { url, password } => {
                Ok(
                    Pg::open_existing(&url, password.as_deref())?.map(|pg| Store {
                        engine: Engine::Pg(pg),
                    }),
                )
            }
        }
    }

    /// Whether this store is shared by several senders (PostgreSQL): a second send of
    /// an edition joins the first instead of waiting for its lock.
    pub fn is_shared(&self) -> bool {
        matches!(self.engine, Engine::Pg(_))
    }

    /// Opens (creating if needed) the SQLite store at `path`, and brings its schema up
    /// to date.
    pub fn open(path: &Path) -> Result<Store> {
        crate::fsutil::prepare_private_file(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open state store {}", path.display()))?;
        let mut db = Self::init(conn)
            .with_context(|| format!("cannot initialise state store {}", path.display()))?;
        db.path = Some(path.to_path_buf());
        Ok(Store {
            engine: Engine::Sqlite(db),
        })
    }

    /// Opens the SQLite store at `path` for reading only, or `None` when there is none
    /// yet (no file, or one a first run is still creating): looking (`brief status`, a
    /// dry run of `brief dispatch`) creates and changes nothing.
    pub fn open_existing(path: &Path) -> Result<Option<Store>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("cannot open state store {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('sends', 'journal', 'suppressions')",
            [],
            |r| r.get(0),
        )?;
        Ok((tables == 3).then_some(Store {
            engine: Engine::Sqlite(Sqlite {
                conn,
                path: Some(path.to_path_buf()),
                progress: Cell::new(0),
            }),
        }))
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Store> {
        Ok(Store {
            engine: Engine::Sqlite(Self::init(Connection::open_in_memory()?)?),
        })
    }

    /// A dry run's store: an in-memory copy of what the store at `location` knows
    /// about one send (and the suppression list), so the dry run reports what a real
    /// run would do and writes nothing, not even a new state file.
    pub fn dry_run_copy(location: &Location, edition: &str, namespace: &str) -> Result<Store> {
        let store = Store::in_memory()?;
        let copied = match location {
            Location::Sqlite(path) if path.exists() => Store::open_existing(path),
            Location::Sqlite(_) => Ok(None),
            Location::Postgres { url, password } => Pg::open_existing(url, password.as_deref())
                .map(|pg| {
                    pg.map(|pg| Store {
                        engine: Engine::Pg(pg),
                    })
                }),
        }
        .and_then(|source| match source {
            Some(source) => copy::one_send(&source, &store, edition, namespace),
            None => Ok(()),
        });
        if let Err(e) = copied {
            tracing::debug!("dry run: nothing copied from the state store: {e:#}");
        }
        Ok(store)
    }

    fn init(mut conn: Connection) -> Result<Sqlite> {
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let schemas = [
            suppressions::SCHEMA,
            journal::SCHEMA,
            reports::SCHEMA,
            bounces::SCHEMA,
            events::SCHEMA,
            mark::SCHEMA,
            lists::SCHEMA,
            clicks::SCHEMA,
        ];
        let new: bool =
            conn.query_row("SELECT count(*) = 0 FROM sqlite_master", [], |r| r.get(0))?;
        if new {
            // A new store in one commit (one WAL flush), not one per table and index:
            // 35 flushes before the first message of a first send.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for schema in schemas {
                tx.execute_batch(schema)?;
            }
            tx.commit()?;
        } else {
            // Usually nothing to create, and so no write lock to wait for.
            for schema in schemas {
                conn.execute_batch(schema)?;
            }
        }
        Ok(Sqlite {
            conn,
            path: None,
            progress: Cell::new(0),
        })
    }

    /// The database, for messages (`memory` for an in-memory store; a PostgreSQL URL
    /// without its password).
    pub fn name(&self) -> String {
        match &self.engine {
            Engine::Sqlite(db) => db
                .path
                .as_ref()
                .map_or_else(|| "memory".into(), |p| p.display().to_string()),
            Engine::Pg(pg) => pg.name.clone(),
        }
    }

    /// Runs `f` in one write transaction (one connection): all of its changes, or none.
    pub fn transaction<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        let db = match &self.engine {
            Engine::Sqlite(db) => db,
            Engine::Pg(pg) => return pg.transaction(|| f(self)),
        };
        db.conn
            .execute_batch("BEGIN IMMEDIATE")
            .context("cannot start a transaction on the state store")?;
        match f(self) {
            Ok(value) => match db.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(value),
                Err(err) => {
                    let _ = db.conn.execute_batch("ROLLBACK");
                    Err(anyhow::Error::new(err).context("cannot commit to the state store"))
                }
            },
            Err(err) => {
                let _ = db.conn.execute_batch("ROLLBACK");
                Err(err)
            }
        }
    }
}

/// Addresses are compared case-insensitively everywhere: this is the one key form.
pub fn address_key(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new store is created in one commit: every page it wrote is in the WAL once
    /// (one commit per table and index wrote the first page again each time).
    #[test]
    fn a_new_store_is_created_in_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("brief.db");
        let _store = Store::open(&db).unwrap();
        let look = Connection::open(&db).unwrap();
        let pages: i64 = look
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let frames: i64 = look
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        assert!(pages > 10, "{pages} pages");
        assert!(frames <= pages, "{frames} WAL frames for {pages} pages");
        // Opening it again creates nothing.
        drop(Store::open(&db).unwrap());
    }
}
