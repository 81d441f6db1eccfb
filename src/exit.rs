//! Exit codes of the contract (README.md, "Exit codes"), decided once at the end of a command.

use std::process::ExitCode;

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or nothing to do.
    Done,
    /// Deferred or in-doubt recipients remain; a later run continues.
    Incomplete,
    /// Another run holds the lock.
    Locked,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Incomplete => 3,
            Outcome::Locked => 75,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(o.code())
    }
}

/// Exit code for an error: config, validation, or a relay that refused the session.
pub const ERROR: u8 = 1;
/// Exit code for a usage error (clap uses the same).
pub const USAGE: u8 = 2;

/// An error that should exit with the usage code rather than the generic error code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The state store went away during a run and stayed away past the bounded wait (a
/// database unreachable at start is a plain error instead). Raised by the store.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the database {name} (waited {waited_secs}s)")]
pub struct StoreAway {
    /// The database, without its password.
    pub name: String,
    pub waited_secs: u64,
}

/// A run that stopped with nothing lost, which a later run continues: exits 3
/// (incomplete), with this message, rather than 1. `brief send` and `brief dispatch`
/// put it on a [`StoreAway`] error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Stopped(pub String);

/// Whether `e` is the state store having gone away mid-run.
pub fn store_away(e: &anyhow::Error) -> Option<&StoreAway> {
    e.downcast_ref::<StoreAway>()
}
