//! Files and directories only berth's own user may read: the data directory
//! (0700) and the metadata database (0600), which hold bcrypt hashes, sealed
//! credentials and every private image.
//!
//! Owns: creating such directories and narrowing the modes of existing ones, so
//! that a data directory written by an earlier, more permissive release is
//! tightened on start. Must not touch: what is inside them.

use std::io;
use std::path::Path;

/// Creates `dir` (and its missing parents) and makes `dir` itself 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

/// Makes an existing file 0600.
pub fn private_file(path: &Path) -> io::Result<()> {
    set_mode(path, 0o600)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        if current & 0o077 != 0 {
            tracing::info!(
                path = %path.display(),
                from = format!("{current:o}"),
                to = format!("{mode:o}"),
                "narrowed permissions: only berth's user may read this"
            );
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_narrowed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("a/data");
        private_dir(&dir).expect("create");
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&dir).expect("again");
        assert_eq!(mode(&dir), 0o700, "an existing directory is narrowed");
        let f = dir.join("db");
        std::fs::write(&f, b"x").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        private_file(&f).expect("narrow");
        assert_eq!(mode(&f), 0o600);
    }
}
