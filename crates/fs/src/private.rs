//! Keeps a SQLite database private at rest: its folder, file and SQLite side files.
//!
//! The stores' databases hold approval requests and tickets, so each is created readable
//! and writable by its owner only: folders the store creates get mode
//! 0700, the file 0600. SQLite creates `-wal` and `-shm` with the mode of the database
//! file, so they follow. A file found group- or world-accessible on open (created by an
//! earlier version with the process umask, or copied in) is tightened to 0600 and the
//! store carries on; folders that already exist are the operator's and stay as they are.

use std::io;
use std::path::{Path, PathBuf};

/// Creates `db`'s missing folders and the file itself with owner-only modes, and tightens
/// an existing `db`, `db-wal` or `db-shm` that others may access.
///
/// # Errors
/// The path that could not be created, opened or changed, and why.
pub fn prepare(db: &Path) -> Result<(), (PathBuf, io::Error)> {
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty());
    imp::prepare(dir, db)
}

/// `db` with `suffix` appended to its file name (`state.db-wal`, `agentsafe.db-wal`).
fn side_file(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(unix)]
mod imp {
    use std::fs::{DirBuilder, OpenOptions, Permissions};
    use std::io;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    use super::side_file;

    pub(super) fn prepare(dir: Option<&Path>, db: &Path) -> Result<(), (PathBuf, io::Error)> {
        if let Some(dir) = dir {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| (dir.to_owned(), e))?;
        }
        // Created here rather than by SQLite, so it never exists with the umask's mode.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)
            .map_err(|e| (db.to_owned(), e))?;
        for path in [db.to_owned(), side_file(db, "-wal"), side_file(db, "-shm")] {
            tighten(&path).map_err(|e| (path, e))?;
        }
        Ok(())
    }

    /// Sets `path` to 0600 when its group or others have any access; a missing file is fine.
    fn tighten(path: &Path) -> io::Result<()> {
        match std::fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, Permissions::from_mode(0o600))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::io;
    use std::path::{Path, PathBuf};

    /// Without Unix modes, only the folders are created; access is the file system's.
    pub(super) fn prepare(dir: Option<&Path>, _db: &Path) -> Result<(), (PathBuf, io::Error)> {
        match dir {
            Some(dir) => std::fs::create_dir_all(dir).map_err(|e| (dir.to_owned(), e)),
            None => Ok(()),
        }
    }
}
