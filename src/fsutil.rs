//! Files that hold personal data (the state database with its journal, outbox messages
//! with working unsubscribe links) are created readable by their owner only, and
//! their folders searchable by their owner only, whatever the umask.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents with mode 0700 (existing folders are left as
/// they are: they may be shared on purpose).
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates (or truncates) `path` for writing, mode 0600.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Makes sure `path` exists with mode 0600 (its missing folders 0700) before another
/// library opens it: SQLite gives its `-wal` and `-shm` files the database's mode.
/// An existing file readable by others is tightened.
pub fn prepare_private_file(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir_all(dir)?;
    }
    // An existing file is not opened: closing a descriptor drops every POSIX lock this
    // process holds on the file, so a SQLite connection already open on it (brief
    // serve's writer, when the hooks open theirs) would lose its locks, and another
    // process closing the database would then delete the write-ahead log under it.
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state/deeper/brief.db");
        prepare_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir.path().join("state")), 0o700);
        assert_eq!(mode(&dir.path().join("state/deeper")), 0o700);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare_private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        let eml = dir.path().join("state/x.eml");
        create_private_file(&eml).unwrap();
        assert_eq!(mode(&eml), 0o600);
    }
}
