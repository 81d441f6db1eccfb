//! The state store: the per-recipient journal and the suppression list, in SQLite
//! (WAL mode, synchronous=FULL so a recorded answer survives a power cut).
//!
//! The rest of brief talks to the store through the traits in the submodules
//! ([`SuppressionList`], and the journal's), so another engine (PostgreSQL for several
//! sending machines) can be added without touching the dispatcher.

mod events;
mod journal;
mod suppressions;

pub use events::{ProviderEvent, ProviderEvents};
pub use journal::{Counts, Entry, Journal, NewRecipient, SendInfo, State, Update, REAL, TEST};
pub use suppressions::{Suppression, SuppressionList, SuppressionSource};

use anyhow::{Context, Result};
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// The SQLite store. One connection; callers that share it across tasks wrap it.
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        crate::fsutil::prepare_private_file(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open state store {}", path.display()))?;
        Self::init(conn)
            .with_context(|| format!("cannot initialise state store {}", path.display()))
    }

    /// An in-memory store, for tests and dry runs.
    pub fn in_memory() -> Result<SqliteStore> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<SqliteStore> {
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(suppressions::SCHEMA)?;
        conn.execute_batch(journal::SCHEMA)?;
        conn.execute_batch(events::SCHEMA)?;
        Ok(SqliteStore { conn })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Addresses are compared case-insensitively everywhere: this is the one key form.
pub fn address_key(email: &str) -> String {
    email.trim().to_lowercase()
}
