//! The state store: the per-recipient journal, the suppression list and the memory of
//! the editor reports, in SQLite (WAL mode, synchronous=FULL so a recorded answer
//! survives a power cut).
//!
//! This folder is the only place with SQL. Callers see [`Store`] and its methods,
//! never a connection: those methods are what a second engine (PostgreSQL for several
//! sending machines) has to provide, after which `Store` holds one engine or the other
//! and its callers do not change.

mod bounces;
mod corrections;
mod events;
mod journal;
mod lists;
mod mark;
mod reports;
mod suppressions;

pub use bounces::{BounceCounts, BounceEvent, SuppressionReason};
pub use events::ProviderEvent;
pub use journal::{Counts, Entry, NewRecipient, SendInfo, State, Update, REAL, TEST};
pub use lists::{erased_key, Addition, Consent, Delivery, ListCounts, Reader, SignupMail};
pub use mark::RolledBack;
pub use reports::ReportKind;
pub use suppressions::{Suppression, SuppressionSource};

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state store. One connection; callers that share it across tasks wrap it.
pub struct Store {
    conn: Connection,
    /// The database file (`None` in memory), for errors and the high-water mark.
    path: Option<PathBuf>,
    /// The journal's progress counter after this connection's last journal commit.
    progress: Cell<i64>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        crate::fsutil::prepare_private_file(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open state store {}", path.display()))?;
        let mut store = Self::init(conn)
            .with_context(|| format!("cannot initialise state store {}", path.display()))?;
        store.path = Some(path.to_path_buf());
        Ok(store)
    }

    /// Opens the store at `path` for reading only, or `None` when there is none yet
    /// (no file, or one a first run is still creating): looking (`brief status`, a dry
    /// run of `brief dispatch`) creates and changes nothing.
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
            conn,
            path: Some(path.to_path_buf()),
            progress: Cell::new(0),
        }))
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    /// A dry run's store: an in-memory copy of what the store at `path` knows about
    /// one send (and the suppression list), so the dry run reports what a real run
    /// would do and writes nothing, not even a new state file.
    pub fn dry_run_copy(path: &Path, edition: &str, namespace: &str) -> Result<Store> {
        let store = Store::in_memory()?;
        if path.exists() {
            let conn = &store.conn;
            conn.execute(
                "ATTACH DATABASE ?1 AS real",
                [format!("file:{}?mode=ro", path.display())],
            )
            .with_context(|| format!("cannot read {}", path.display()))?;
            let copy = conn
                .execute_batch("INSERT INTO main.suppressions SELECT * FROM real.suppressions;")
                .and_then(|_| {
                    conn.execute(
                        "INSERT INTO main.sends SELECT * FROM real.sends WHERE edition = ?1 AND namespace = ?2",
                        [edition, namespace],
                    )?;
                    conn.execute(
                        "INSERT INTO main.journal SELECT * FROM real.journal WHERE edition = ?1 AND namespace = ?2",
                        [edition, namespace],
                    )
                });
            if let Err(e) = copy {
                tracing::debug!("dry run: nothing copied from the state store: {e}");
            }
            conn.execute_batch("DETACH DATABASE real")?;
        }
        Ok(store)
    }

    fn init(conn: Connection) -> Result<Store> {
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(suppressions::SCHEMA)?;
        conn.execute_batch(journal::SCHEMA)?;
        conn.execute_batch(reports::SCHEMA)?;
        conn.execute_batch(bounces::SCHEMA)?;
        conn.execute_batch(events::SCHEMA)?;
        conn.execute_batch(mark::SCHEMA)?;
        conn.execute_batch(lists::SCHEMA)?;
        Ok(Store {
            conn,
            path: None,
            progress: Cell::new(0),
        })
    }

    /// The database file, for messages (`memory` for an in-memory store).
    pub fn name(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "memory".into(), |p| p.display().to_string())
    }

    /// Runs `f` in one write transaction: all of its changes, or none.
    pub fn transaction<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .context("cannot start a transaction on the state store")?;
        match f(self) {
            Ok(value) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(value),
                Err(err) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(anyhow::Error::new(err).context("cannot commit to the state store"))
                }
            },
            Err(err) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(err)
            }
        }
    }
}

/// Addresses are compared case-insensitively everywhere: this is the one key form.
pub fn address_key(email: &str) -> String {
    email.trim().to_lowercase()
}
