//! One writer per edition: an OS file lock (flock) on a file beside the state store.
//! The kernel releases it when the process ends, even on kill -9; no PID files.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Held while a send of one edition runs; released on drop or process exit.
#[derive(Debug)]
pub struct EditionLock {
    _file: File,
}

/// `<state dir>/locks/<slug>.lock`.
pub fn lock_path(state_path: &Path, slug: &str) -> PathBuf {
    let dir = state_path.parent().unwrap_or(Path::new("."));
    let safe: String = slug
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join("locks").join(format!("{safe}.lock"))
}

/// Takes the lock, or returns `None` at once if another process holds it.
pub fn try_lock(state_path: &Path, slug: &str) -> Result<Option<EditionLock>> {
    Ok(acquire(state_path, slug, false)?.map(|file| EditionLock { _file: file }))
}

/// Takes the lock named `name` beside the state store: waits for it when `wait`,
/// otherwise returns `None` at once if another process holds it. Held until the
/// returned file is dropped.
pub fn acquire(state_path: &Path, name: &str, wait: bool) -> Result<Option<File>> {
    let path = lock_path(state_path, name);
    if let Some(dir) = path.parent() {
        crate::fsutil::create_private_dir_all(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    let taken = if wait {
        file.lock().map_err(TryLockError::Error)
    } else {
        file.try_lock()
    };
    match taken {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// True if a send of this edition is running now (without creating anything).
pub fn is_locked(state_path: &Path, slug: &str) -> bool {
    let Ok(file) = File::open(lock_path(state_path, slug)) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("brief.db");
        let held = try_lock(&db, "e1").unwrap().unwrap();
        assert!(try_lock(&db, "e1").unwrap().is_none());
        assert!(is_locked(&db, "e1"));
        assert!(try_lock(&db, "e2").unwrap().is_some());
        drop(held);
        assert!(!is_locked(&db, "e1"));
        assert!(try_lock(&db, "e1").unwrap().is_some());
    }
}
