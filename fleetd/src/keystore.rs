//! Encryption at rest for CA private keys.
//!
//! fleetd keeps one 32-byte **master key** (the key-encryption key) in a
//! file outside the database: `--master-key-file` / `FLEETD_MASTER_KEY_FILE`,
//! by default `<data-dir>/master.key`, created on first start with 32 random
//! bytes and mode 0600. A copy of the database alone (a backup, a replica's
//! PostgreSQL) therefore does not reveal any CA key; the two must be backed
//! up separately. Replicas sharing one database must share the master key.
//!
//! Every CA key is sealed with ChaCha20-Poly1305 (ring's AEAD) under a
//! fresh random 96-bit nonce. The sealed blob is self-describing:
//!
//! ```text
//! [format = 1][master key id: 8 bytes][nonce: 12 bytes][ciphertext + 16-byte tag]
//! ```
//!
//! The master key id (a truncated SHA-256 of the key under a domain
//! separator, never the key itself) lets fleetd tell "this is not the key
//! these secrets were sealed with" apart from "the blob was tampered with",
//! and refuse to start with the wrong master key instead of failing later
//! on the first signature. A caller-supplied context string (for CA keys,
//! the CA certificate's fingerprint) is authenticated as associated data,
//! so a sealed key copied onto another CA's row does not decrypt.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// Length of a master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;
/// Default file name of the master key inside the data directory.
pub const DEFAULT_FILE: &str = "master.key";

const FORMAT_V1: u8 = 1;
const KEY_ID_LEN: usize = 8;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// Why a sealed secret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoreError {
    #[error(
        "the secret was encrypted with master key {sealed_with}, but this fleetd's master key \
         is {current}: start fleetd with the master key file it was created with"
    )]
    WrongKey {
        sealed_with: String,
        current: String,
    },
    #[error("the encrypted secret is corrupt or was altered (authentication failed)")]
    Corrupt,
    #[error("the encrypted secret has an unknown format (version {0})")]
    UnknownFormat(u8),
    #[error("the encrypted secret is truncated")]
    Truncated,
}

/// The key-encryption key. Its bytes are never printed.
pub struct MasterKey {
    key: LessSafeKey,
    id: String,
    id_bytes: [u8; KEY_ID_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Where [`MasterKey::load_or_create`] got the key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    Loaded(PathBuf),
    Created(PathBuf),
}

impl MasterKey {
    /// A master key from exactly [`MASTER_KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        if bytes.len() != MASTER_KEY_LEN {
            anyhow::bail!(
                "a master key is {MASTER_KEY_LEN} bytes, got {}",
                bytes.len()
            );
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| anyhow::anyhow!("invalid master key"))?;
        let digest = Sha256::new()
            .chain_update(b"fleetd master key id v1\0")
            .chain_update(bytes)
            .finalize();
        let mut id_bytes = [0u8; KEY_ID_LEN];
        id_bytes.copy_from_slice(&digest[..KEY_ID_LEN]);
        Ok(MasterKey {
            key: LessSafeKey::new(unbound),
            id: hex::encode(id_bytes),
            id_bytes,
        })
    }

    /// A fresh random master key, with its bytes (to be saved).
    pub fn generate() -> anyhow::Result<(Self, [u8; MASTER_KEY_LEN])> {
        let mut bytes = [0u8; MASTER_KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("the operating system's random generator failed"))?;
        Ok((Self::from_bytes(&bytes)?, bytes))
    }

    /// Parses a master key file: 32 raw bytes, or 64 hex digits (as
    /// written by `openssl rand -hex 32`) with optional surrounding
    /// whitespace.
    pub fn parse_file_contents(contents: &[u8]) -> anyhow::Result<Self> {
        if contents.len() == MASTER_KEY_LEN {
            return Self::from_bytes(contents);
        }
        let text = std::str::from_utf8(contents).ok().map(str::trim);
        match text.and_then(|t| hex::decode(t).ok()) {
            Some(bytes) if bytes.len() == MASTER_KEY_LEN => Self::from_bytes(&bytes),
            _ => anyhow::bail!(
                "expected {MASTER_KEY_LEN} raw bytes or {} hex digits, got {} bytes \
                 (create one with `openssl rand -hex 32`)",
                MASTER_KEY_LEN * 2,
                contents.len()
            ),
        }
    }

    /// Reads the master key at `path`. When the file does not exist and
    /// `create` is true, generates one and saves it (mode 0600, created
    /// atomically: when two processes race, both end up with the same key).
    pub fn load_or_create(path: &Path, create: bool) -> anyhow::Result<(Self, KeyOrigin)> {
        match std::fs::read(path) {
            Ok(contents) => {
                warn_if_readable_by_others(path);
                let key = Self::parse_file_contents(&contents)
                    .with_context(|| format!("invalid master key file {}", path.display()))?;
                Ok((key, KeyOrigin::Loaded(path.to_owned())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let (key, bytes) = Self::generate()?;
                let created = crate::atomic_file::create_new(path, &bytes, 0o600)
                    .with_context(|| format!("creating master key file {}", path.display()))?;
                if created {
                    Ok((key, KeyOrigin::Created(path.to_owned())))
                } else {
                    // Another process created it first: use theirs.
                    Self::load_or_create(path, false)
                }
            }
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("reading master key file {}", path.display()))),
        }
    }

    /// Public identifier of this key (16 hex digits); safe to log.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `plaintext`, binding it to `context` (which must be given
    /// again to [`MasterKey::open`]).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("the operating system's random generator failed"))?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.id_bytes);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypts a blob made by [`MasterKey::seal`] with the same context.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, KeystoreError> {
        let Some(&format) = sealed.first() else {
            return Err(KeystoreError::Truncated);
        };
        if format != FORMAT_V1 {
            return Err(KeystoreError::UnknownFormat(format));
        }
        if sealed.len() < HEADER_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(KeystoreError::Truncated);
        }
        let sealed_with = sealed_key_id(sealed).unwrap_or_default();
        if sealed_with != self.id {
            return Err(KeystoreError::WrongKey {
                sealed_with,
                current: self.id.clone(),
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1 + KEY_ID_LEN..HEADER_LEN]);
        let mut body = sealed[HEADER_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .map_err(|_| KeystoreError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

/// The id of the master key a blob was sealed with (as in
/// [`MasterKey::id`]), if the blob is in a known format.
pub fn sealed_key_id(sealed: &[u8]) -> Option<String> {
    (sealed.first() == Some(&FORMAT_V1) && sealed.len() > KEY_ID_LEN)
        .then(|| hex::encode(&sealed[1..1 + KEY_ID_LEN]))
}

/// Path of the master key file: the configured one or
/// `<data_dir>/master.key`.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DEFAULT_FILE)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the master key file is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; MASTER_KEY_LEN]).unwrap()
    }

    #[test]
    fn seals_and_opens() {
        let k = key(1);
        let sealed = k.seal(b"secret key", "ctx").unwrap();
        assert_eq!(k.open(&sealed, "ctx").unwrap(), b"secret key");
        assert_eq!(sealed_key_id(&sealed).as_deref(), Some(k.id()));
        // The plaintext does not appear in the blob, and nonces differ.
        assert!(!sealed.windows(10).any(|w| w == b"secret key"));
        assert_ne!(sealed, k.seal(b"secret key", "ctx").unwrap());
    }

    #[test]
    fn wrong_key_is_a_clear_error_not_garbage() {
        let sealed = key(1).seal(b"secret", "ctx").unwrap();
        let err = key(2).open(&sealed, "ctx").unwrap_err();
        assert_eq!(
            err,
            KeystoreError::WrongKey {
                sealed_with: key(1).id().to_owned(),
                current: key(2).id().to_owned()
            }
        );
        assert!(err.to_string().starts_with(&format!(
            "the secret was encrypted with master key {}, but this fleetd's master key is {}",
            key(1).id(),
            key(2).id()
        )));
    }

    #[test]
    fn tampering_and_wrong_context_are_detected() {
        let k = key(1);
        let mut sealed = k.seal(b"secret", "ctx").unwrap();
        assert_eq!(k.open(&sealed, "other"), Err(KeystoreError::Corrupt));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(k.open(&sealed, "ctx"), Err(KeystoreError::Corrupt));
        assert_eq!(k.open(&[], "ctx"), Err(KeystoreError::Truncated));
        assert_eq!(k.open(&sealed[..20], "ctx"), Err(KeystoreError::Truncated));
        assert_eq!(
            k.open(&[9, 0, 0], "ctx"),
            Err(KeystoreError::UnknownFormat(9))
        );
    }

    #[test]
    fn ids_differ_per_key_and_debug_hides_the_key() {
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().len(), 16);
        let debug = format!("{:?}", key(7));
        assert!(debug.contains(key(7).id()), "{debug}");
        assert!(!debug.contains("7, 7"), "{debug}");
    }

    #[test]
    fn parses_raw_and_hex_files() {
        let raw = [3u8; 32];
        assert_eq!(
            MasterKey::parse_file_contents(&raw).unwrap().id(),
            key(3).id()
        );
        let hexed = format!("{}\n", hex::encode(raw));
        assert_eq!(
            MasterKey::parse_file_contents(hexed.as_bytes())
                .unwrap()
                .id(),
            key(3).id()
        );
        let err = MasterKey::parse_file_contents(b"short")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected 32 raw bytes or 64 hex digits, got 5 bytes"),
            "{err}"
        );
        assert!(MasterKey::from_bytes(&[0; 16]).is_err());
    }

    #[test]
    fn creates_once_with_private_mode_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(dir.path());
        let (a, origin) = MasterKey::load_or_create(&path, true).unwrap();
        assert_eq!(origin, KeyOrigin::Created(path.clone()));
        assert_eq!(std::fs::read(&path).unwrap().len(), MASTER_KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (b, origin) = MasterKey::load_or_create(&path, true).unwrap();
        assert_eq!(origin, KeyOrigin::Loaded(path.clone()));
        assert_eq!(a.id(), b.id());
        let sealed = a.seal(b"x", "c").unwrap();
        assert_eq!(b.open(&sealed, "c").unwrap(), b"x");
    }

    #[test]
    fn missing_file_without_create_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.key");
        let err = format!("{:#}", MasterKey::load_or_create(&path, false).unwrap_err());
        assert!(
            err.starts_with(&format!("reading master key file {}", path.display())),
            "{err}"
        );
        std::fs::write(&path, b"garbage").unwrap();
        let err = format!("{:#}", MasterKey::load_or_create(&path, true).unwrap_err());
        assert!(
            err.starts_with(&format!("invalid master key file {}", path.display())),
            "{err}"
        );
    }
}
