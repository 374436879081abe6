//! The collector's Ed25519 evidence signing key: created once, kept as
//! PKCS#8 in an owner-only file, never silently replaced.

use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use super::{EvidenceError, io, sha256_hex};

/// File name of the key inside the directory given to
/// [`EvidenceKey::load_or_create`].
pub const KEY_FILE: &str = "evidence-ed25519.pk8";

/// The key that signs chain heads and bundle manifests.
pub struct EvidenceKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for EvidenceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceKey")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl EvidenceKey {
    /// Loads the key from `dir/evidence-ed25519.pk8`, creating it (0600, in
    /// a 0700 directory, written atomically) on first use. A file that is
    /// present but unreadable as an Ed25519 PKCS#8 key is an error: a new
    /// key would orphan every signature made with the old one.
    pub fn load_or_create(dir: &Path) -> Result<Self, EvidenceError> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_pkcs8(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(dir, &path),
            Err(e) => Err(io("reading the evidence key", &path)(e)),
        }
    }

    fn from_pkcs8(path: &Path, bytes: &[u8]) -> Result<Self, EvidenceError> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).map_err(|e| EvidenceError::KeyCorrupt {
            path: path.to_owned(),
            reason: format!("not an Ed25519 PKCS#8 v2 key: {e}"),
        })?;
        Ok(Self { pair })
    }

    /// Writes a fresh key under a private name, then links it to the final
    /// name, which fails if another process got there first; that process's
    /// key is then the one used. So two processes starting together (the
    /// collector and an `evidence export`) never end up with different keys.
    fn create(dir: &Path, path: &Path) -> Result<Self, EvidenceError> {
        xunjian_agent::fsutil::create_dir_private(dir)
            .map_err(io("creating the evidence key directory", dir))?;
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| EvidenceError::KeyGeneration)?;
        let staging = staging_path(path);
        xunjian_agent::fsutil::write_atomic(&staging, doc.as_ref(), 0o600)
            .map_err(io("writing the evidence key", &staging))?;
        let linked = std::fs::hard_link(&staging, path);
        // The staging name is ours alone; failing to remove it leaves a
        // stray private file, not a wrong key.
        let _ = std::fs::remove_file(&staging);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created the evidence signing key");
                Self::from_pkcs8(path, doc.as_ref())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(path).map_err(io("reading the evidence key", path))?;
                Self::from_pkcs8(path, &bytes)
            }
            Err(e) => Err(io("installing the evidence key", path)(e)),
        }
    }

    /// The raw 32-byte public key, hex.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key())
    }

    /// SHA-256 of the raw public key, hex: what an auditor pins.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(self.public_key())
    }

    /// Ed25519 signature over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }

    pub(crate) fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }
}

fn staging_path(path: &Path) -> PathBuf {
    let nonce: u64 = rand::random();
    path.with_file_name(format!(
        ".{KEY_FILE}.{}-{nonce:016x}.new",
        std::process::id()
    ))
}

pub(crate) fn fingerprint_of(public_key: &[u8]) -> String {
    sha256_hex(public_key)
}

/// Whether `signature` is `public_key`'s Ed25519 signature over `msg`.
pub(crate) fn signature_valid(public_key: &[u8], msg: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(msg, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("pki");
        let a = EvidenceKey::load_or_create(&keys).unwrap();
        let b = EvidenceKey::load_or_create(&keys).unwrap();
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        assert_eq!(a.fingerprint().len(), 64);
        assert_eq!(a.public_key_hex().len(), 64);
        let sig = a.sign(b"msg");
        assert!(signature_valid(b.public_key(), b"msg", &sig));
        assert!(!signature_valid(b.public_key(), b"msh", &sig));
        let names: Vec<_> = std::fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![KEY_FILE.to_owned()], "no staging files left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_key_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, b"not a key").unwrap();
        let err = EvidenceKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, EvidenceError::KeyCorrupt { .. }), "{err}");
        assert!(err.to_string().contains("restore it from a backup"));
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
    }
}
