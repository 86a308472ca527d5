//! Safe writes of a user's config file.
//!
//! A write goes to a temporary file in the same directory, is fsynced, takes
//! the original's permissions and is renamed over it, so a reader never sees
//! half a file. Before the first change servetune keeps the original in
//! `.servetune/<name>.orig` beside it, and after each write it records a digest
//! of what it wrote, so that `restore` can tell whether someone else has
//! changed the file since. A file that changed since servetune read it is
//! never overwritten.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::ConfigError;

/// Hex SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Where servetune keeps the original of `path` and the digest of its last write.
#[derive(Debug, Clone)]
pub struct BackupPaths {
    pub original: PathBuf,
    pub last_written: PathBuf,
}

impl BackupPaths {
    pub fn of(path: &Path) -> Self {
        let directory = path.parent().unwrap_or(Path::new(".")).join(".servetune");
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            original: directory.join(format!("{name}.orig")),
            last_written: directory.join(format!("{name}.written")),
        }
    }
}

/// A config file as servetune read it: the bytes, to detect later changes.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    read_bytes: Vec<u8>,
}

fn read_error(path: &Path, source: std::io::Error) -> ConfigError {
    ConfigError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn write_error(path: &Path, source: std::io::Error) -> ConfigError {
    ConfigError::Write {
        path: path.to_path_buf(),
        source,
    }
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let read_bytes = fs::read(path).map_err(|e| read_error(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            read_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes as read.
    pub fn bytes(&self) -> &[u8] {
        &self.read_bytes
    }

    /// Replaces the file with `new_bytes`, atomically, if nobody changed it
    /// since it was read. Backs up the original on first touch. Afterwards
    /// this handle holds `new_bytes`, so it can write again (e.g. to roll back).
    pub fn write(&mut self, new_bytes: &[u8]) -> Result<(), ConfigError> {
        let current = fs::read(&self.path).map_err(|e| read_error(&self.path, e))?;
        if current != self.read_bytes {
            return Err(ConfigError::ChangedSinceRead {
                path: self.path.clone(),
            });
        }
        let backups = BackupPaths::of(&self.path);
        if !backups.original.exists() {
            let directory = backups.original.parent().expect("backup paths have a parent");
            fs::create_dir_all(directory).map_err(|e| write_error(directory, e))?;
            write_atomically(&backups.original, &current, &self.path)?;
        }
        write_atomically(&self.path, new_bytes, &self.path)?;
        self.read_bytes = new_bytes.to_vec();
        if fs::read(&backups.original).is_ok_and(|original| original == new_bytes) {
            // Back to the original (a rollback, a study's end): nothing of
            // servetune's remains, so a later hand edit is the new original.
            return forget(&backups);
        }
        write_atomically(&backups.last_written, digest(new_bytes).as_bytes(), &self.path)
    }
}

/// Removes the backup and digest (and their folder when it is empty).
fn forget(backups: &BackupPaths) -> Result<(), ConfigError> {
    for file in [&backups.original, &backups.last_written] {
        if let Err(e) = fs::remove_file(file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(write_error(file, e));
            }
        }
    }
    if let Some(directory) = backups.original.parent() {
        // Only removes the folder when it is empty; other files' backups stay.
        let _ = fs::remove_dir(directory);
    }
    Ok(())
}

/// What `restore` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    Restored,
    AlreadyOriginal,
}

/// Puts back the original saved on first touch, byte-identical, and forgets
/// the backup. Refuses (unless `force`) when the file was changed by someone
/// else after servetune's last write.
pub fn restore(path: &Path, force: bool) -> Result<RestoreOutcome, ConfigError> {
    let backups = BackupPaths::of(path);
    let original = match fs::read(&backups.original) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NoBackup {
                path: path.to_path_buf(),
                backup: backups.original,
            })
        }
        Err(e) => return Err(read_error(&backups.original, e)),
    };
    let current = fs::read(path).map_err(|e| read_error(path, e))?;
    let last_written = fs::read_to_string(&backups.last_written).unwrap_or_default();
    let outcome = if current == original {
        RestoreOutcome::AlreadyOriginal
    } else {
        if !force && digest(&current) != last_written.trim() {
            return Err(ConfigError::ChangedSinceWrite {
                path: path.to_path_buf(),
            });
        }
        write_atomically(path, &original, path)?;
        RestoreOutcome::Restored
    };
    forget(&backups)?;
    Ok(outcome)
}

/// A data file (results, servetune's own files): written atomically, mode
/// 0644 — readable, not executable, whatever the folder's mode.
pub fn write_data_atomically(destination: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    write_atomically_with(destination, bytes, Some(fs::Permissions::from_mode(0o644)))
}

/// Temp file in the destination's directory, fsync, permissions of
/// `permissions_from`, rename, fsync of the directory.
pub fn write_atomically(destination: &Path, bytes: &[u8], permissions_from: &Path) -> Result<(), ConfigError> {
    write_atomically_with(
        destination,
        bytes,
        fs::metadata(permissions_from).ok().map(|m| m.permissions()),
    )
}

fn write_atomically_with(
    destination: &Path,
    bytes: &[u8],
    permissions: Option<fs::Permissions>,
) -> Result<(), ConfigError> {
    let directory = destination
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temporary = tempfile::Builder::new()
        .prefix(".servetune-")
        .tempfile_in(directory)
        .map_err(|e| write_error(destination, e))?;
    temporary.write_all(bytes).map_err(|e| write_error(destination, e))?;
    if let Some(permissions) = permissions {
        fs::set_permissions(temporary.path(), permissions).map_err(|e| write_error(destination, e))?;
    }
    temporary
        .as_file()
        .sync_all()
        .map_err(|e| write_error(destination, e))?;
    temporary
        .persist(destination)
        .map_err(|e| write_error(destination, e.error))?;
    if let Ok(handle) = fs::File::open(directory) {
        let _ = handle.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_backs_up_once_and_restore_is_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.properties");
        fs::write(&path, b"a=1\r\n# keep\n").unwrap();
        let mut file = ConfigFile::read(&path).unwrap();
        file.write(b"a=2\n").unwrap();
        file.write(b"a=3\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"a=3\n");
        assert_eq!(restore(&path, false).unwrap(), RestoreOutcome::Restored);
        assert_eq!(fs::read(&path).unwrap(), b"a=1\r\n# keep\n");
        assert!(!dir.path().join(".servetune").exists());
        assert!(matches!(restore(&path, false), Err(ConfigError::NoBackup { .. })));
    }

    #[test]
    fn writing_the_original_back_forgets_the_backup_so_a_hand_edit_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.properties");
        fs::write(&path, b"number_of_netty_threads=2\n").unwrap();
        // A change, then its rollback (what a failed `apply --restart` does).
        let mut file = ConfigFile::read(&path).unwrap();
        file.write(b"number_of_netty_threads=8\n").unwrap();
        file.write(b"number_of_netty_threads=2\n").unwrap();
        assert!(
            !BackupPaths::of(&path).original.exists(),
            "nothing of servetune's remains"
        );
        // The operator edits by hand; servetune changes it; restore gives back the hand edit.
        fs::write(&path, b"number_of_netty_threads=6\n").unwrap();
        ConfigFile::read(&path)
            .unwrap()
            .write(b"number_of_netty_threads=4\n")
            .unwrap();
        assert_eq!(restore(&path, false).unwrap(), RestoreOutcome::Restored);
        assert_eq!(fs::read(&path).unwrap(), b"number_of_netty_threads=6\n");
    }

    #[test]
    fn data_files_are_not_executable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("summary.md");
        write_data_atomically(&path, b"# x\n").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn a_file_changed_since_read_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.properties");
        fs::write(&path, b"a=1\n").unwrap();
        let mut file = ConfigFile::read(&path).unwrap();
        fs::write(&path, b"a=someone else\n").unwrap();
        assert!(matches!(
            file.write(b"a=2\n"),
            Err(ConfigError::ChangedSinceRead { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), b"a=someone else\n");
    }

    #[test]
    fn restore_refuses_to_drop_someone_elses_edit_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.properties");
        fs::write(&path, b"a=1\n").unwrap();
        ConfigFile::read(&path).unwrap().write(b"a=2\n").unwrap();
        fs::write(&path, b"a=edited by hand\n").unwrap();
        assert!(matches!(
            restore(&path, false),
            Err(ConfigError::ChangedSinceWrite { .. })
        ));
        assert_eq!(restore(&path, true).unwrap(), RestoreOutcome::Restored);
        assert_eq!(fs::read(&path).unwrap(), b"a=1\n");
    }

    #[cfg(unix)]
    #[test]
    fn keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.properties");
        fs::write(&path, b"a=1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        ConfigFile::read(&path).unwrap().write(b"a=2\n").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    }
}
