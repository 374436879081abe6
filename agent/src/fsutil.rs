//! Writing files that must be whole and private: keys, certificates,
//! identities. Shared by the agent (credentials) and the collector (its CA).

use std::io::Write;
use std::path::Path;

/// Creates `dir` (and parents) readable by its owner only.
pub fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename), with
/// `mode` (e.g. 0o600 for private keys) set before the file gets its name,
/// so a crash never leaves a half-written or over-readable file behind.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    // `mode` on open is filtered by the umask; set it exactly.
    set_mode(&tmp, mode)?;
    std::fs::rename(&tmp, path)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_file_is_written_whole_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("keys");
        create_dir_private(&sub).unwrap();
        let path = sub.join("k.pem");
        write_atomic(&path, b"secret", 0o600).unwrap();
        write_atomic(&path, b"secret2", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"secret2");
        assert!(!sub.join("k.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
    }
}
