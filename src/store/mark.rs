//! The journal's high-water mark: a guard against a journal that went back in time.
//!
//! Until SQLite checkpoints it, recent progress lives only in the `-wal` file. A copy
//! or restore without that file, or a damaged one, silently turns the journal back to
//! an older state, and the next send would mail again readers it had already sent
//! to. So every journal commit also counts one step in the database (`progress`), and
//! before a sender is told that its in-doubt mark is durable (the step before a body
//! goes out), the step reached is written and fsynced to a small file beside the
//! database, outside the WAL: `brief.db.mark`. A send first checks that the journal
//! reached at least that step; one that did not is refused with the way to recover.

use super::{Engine, Store};
use anyhow::{Context, Result};
use rusqlite::OptionalExtension;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS progress (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    step INTEGER NOT NULL
);
";

/// The journal lost progress that its high-water mark says was durably recorded.
#[derive(Debug)]
pub struct RolledBack {
    pub database: PathBuf,
    pub mark: PathBuf,
    pub journal_step: i64,
    pub marked_step: i64,
}

impl fmt::Display for RolledBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let db = self.database.display();
        write!(
            f,
            "the journal {db} went back in time: it is at step {}, but {} records that step {} had been durably written. \
             It was probably restored or copied without its -wal file, or that file was damaged. \
             Sending now would mail again readers who already got their copy, so nothing was sent. \
             Recover by putting back {db} together with its {db}-wal from the same moment; \
             or, to accept the loss (readers recorded since then may get a second copy), delete {} and run again",
            self.journal_step,
            self.mark.display(),
            self.marked_step,
            self.mark.display()
        )
    }
}

impl std::error::Error for RolledBack {}

/// `state/brief.db` → `state/brief.db.mark`.
fn mark_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".mark");
    PathBuf::from(name)
}

impl Store {
    /// Counts one journal step inside the open transaction `tx`.
    pub(super) fn count_step(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<i64> {
        tx.prepare_cached(
            "INSERT INTO progress (id, step) VALUES (1, 1)
             ON CONFLICT (id) DO UPDATE SET step = step + 1 RETURNING step",
        )?
        .query_row([], |r| r.get(0))
    }

    fn journal_step(conn: &rusqlite::Connection) -> Result<i64> {
        Ok(conn
            .query_row("SELECT step FROM progress WHERE id = 1", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// Refuses (with [`RolledBack`]) a journal behind its high-water mark. One that is
    /// ahead (the process died between a commit and the mark) moves the mark up.
    /// (PostgreSQL has no such file to lose: a commit is durable on the server.)
    pub fn check_progress(&self) -> Result<()> {
        let Engine::Sqlite(db) = &self.engine else {
            return Ok(());
        };
        let Some(database) = &db.path else {
            return Ok(());
        };
        let mark = mark_path(database);
        let journal_step = Self::journal_step(&db.conn)?;
        let marked_step = raise(&mark, journal_step)
            .with_context(|| format!("cannot update {}", mark.display()))?;
        if journal_step < marked_step {
            return Err(RolledBack {
                database: database.clone(),
                mark,
                journal_step,
                marked_step,
            }
            .into());
        }
        db.progress.set(journal_step);
        Ok(())
    }

    /// The high-water mark at the step of this connection's last journal commit, to
    /// be made durable before in-doubt marks are acknowledged, on any thread (the
    /// journal writer syncs it while its next transaction commits). None without a
    /// mark file (PostgreSQL, a store in memory).
    pub fn high_water(&self) -> Option<HighWater> {
        let Engine::Sqlite(db) = &self.engine else {
            return None;
        };
        Some(HighWater {
            mark: mark_path(db.path.as_ref()?),
            step: db.progress.get(),
        })
    }
}

/// A journal step to make durable in the high-water mark file.
pub struct HighWater {
    mark: PathBuf,
    step: i64,
}

impl HighWater {
    /// Opens the mark file, to record this step and later ones of the same journal
    /// without opening it again each time.
    pub fn open(&self) -> Result<MarkFile> {
        MarkFile::open(&self.mark).with_context(|| format!("cannot open {}", self.mark.display()))
    }

    /// Raises the mark in `file` (opened by [`HighWater::open`]) to this step.
    pub fn record(&self, file: &MarkFile) -> Result<()> {
        file.raise(self.step)
            .with_context(|| format!("cannot write {}", self.mark.display()))?;
        Ok(())
    }
}

/// The open high-water mark file. A journal writer keeps it open for the whole send:
/// raising the mark is then a lock, a read, a write in place and an fdatasync, with
/// no open, close or lookup on the way of every acknowledgement.
pub struct MarkFile {
    file: File,
}

impl MarkFile {
    /// Opens (creating) the mark file at `path`.
    fn open(path: &Path) -> std::io::Result<MarkFile> {
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        if created {
            // The new file's name must survive a power cut too.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(MarkFile { file })
    }

    /// Raises the mark to `step` (never lowers it: two sends of different editions
    /// share it, under an exclusive lock) and returns the mark as it was.
    fn raise(&self, step: i64) -> std::io::Result<i64> {
        self.file.lock()?;
        let raised = self.raise_locked(step);
        self.file.unlock()?;
        raised
    }

    fn raise_locked(&self, step: i64) -> std::io::Result<i64> {
        // The mark is one fixed-width line: 21 bytes, read whole at offset 0.
        let mut buf = [0u8; 64];
        let n = self.file.read_at(&mut buf, 0)?;
        let text = std::str::from_utf8(&buf[..n]).unwrap_or("?");
        let old: i64 = match text.trim() {
            "" => 0,
            t => t.parse().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a journal step: {t:?}"),
                )
            })?,
        };
        if step > old {
            // One fixed-width write in place (the size stays, so fdatasync flushes
            // the data alone): a kill cannot leave it half written.
            self.file
                .write_all_at(format!("{step:020}\n").as_bytes(), 0)?;
            self.file.sync_data()?;
        }
        Ok(old)
    }
}

/// Raises the mark in `path` to `step` and returns the mark as it was.
fn raise(path: &Path, step: i64) -> std::io::Result<i64> {
    MarkFile::open(path)?.raise(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewRecipient, State, Update, REAL};

    #[test]
    fn a_journal_behind_its_mark_is_refused_and_one_ahead_moves_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("brief.db");
        let s = Store::open(&db).unwrap();
        s.check_progress().unwrap();
        let now = crate::clock::now();
        s.freeze(
            "e",
            REAL,
            now,
            &mut std::iter::once(NewRecipient {
                address: "a@x.org".into(),
                name: String::new(),
                fields: "{}".into(),
            }),
            &mut || 0,
        )
        .unwrap();
        let id = s.due("e", REAL, 0, now, false, 1).unwrap()[0].id;
        s.apply(&[Update::new(id, State::InDoubt, now)]).unwrap();
        let high_water = s.high_water().unwrap();
        high_water.record(&high_water.open().unwrap()).unwrap();
        assert_eq!(
            std::fs::read_to_string(mark_path(&db)).unwrap().trim(),
            "00000000000000000001"
        );
        s.check_progress().unwrap();
        drop(s);
        // The journal as it was before that commit.
        std::fs::write(mark_path(&db), "5\n").unwrap();
        let err = Store::open(&db).unwrap().check_progress().unwrap_err();
        let rolled = err.downcast_ref::<RolledBack>().expect("RolledBack");
        assert_eq!((rolled.journal_step, rolled.marked_step), (1, 5));
        assert!(err.to_string().contains("brief.db.mark and run again"));
    }
}
