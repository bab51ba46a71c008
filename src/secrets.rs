//! Secrets writ hands out (admin tokens, API keys, client secrets): 256 random bits,
//! shown once, stored only as a keyed BLAKE3 hash.
//!
//! The hashing key is the deployment's own, kept in `<data-dir>/keys/secret-hash.key`
//! with owner-only permissions and never in the ledger: an exported ledger (what auditors
//! receive) then holds hashes no one can test guesses against without that file.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use writ_schemas::Digest;

use crate::ledger::datadir::{DataDir, sync_dir};
use crate::ledger::storage::StorageError;

const KEY_FILE: &str = "secret-hash.key";

/// Hashes secrets with the deployment's key. `Debug` does not print the key.
#[derive(Clone)]
pub struct SecretHasher {
    key: [u8; 32],
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(***)")
    }
}

impl SecretHasher {
    /// Loads the data directory's hashing key, creating it (owner-only) on first use.
    pub fn load_or_create(dir: &DataDir) -> Result<SecretHasher, StorageError> {
        SecretHasher::open(dir, true)
    }

    /// Loads the hashing key, which must exist: the ledger already holds secrets hashed
    /// with it, and a new key would make every one of them unusable (a second node given
    /// a keys directory of its own, or a lost keys folder).
    pub fn load_existing(dir: &DataDir) -> Result<SecretHasher, StorageError> {
        SecretHasher::open(dir, false)
    }

    fn open(dir: &DataDir, create: bool) -> Result<SecretHasher, StorageError> {
        let keys = dir.keys();
        let path = keys.join(KEY_FILE);
        let io = |what: &'static str| {
            let shown = path.display().to_string();
            move |err| StorageError::io(format!("{what} {shown}"), err)
        };
        std::fs::create_dir_all(&keys).map_err(io("creating the folder of"))?;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))
            .map_err(io("restricting the folder of"))?;
        let mut key = [0u8; 32];
        match File::open(&path) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(io("reading"))?;
                if bytes.len() != 32 {
                    return Err(StorageError::Corrupt(format!(
                        "{} holds {} bytes, not a 32-byte key; restore it from backup (every secret's hash depends on it)",
                        path.display(),
                        bytes.len()
                    )));
                }
                key.copy_from_slice(&bytes);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !create => {
                return Err(StorageError::NotALedger(format!(
                    "{} does not exist, but the ledger holds secrets hashed with it: every node of a ledger needs the same keys; copy the keys folder of the node that created the ledger (or point --keys-dir at it), or restore it from backup",
                    path.display()
                )));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                rand::fill(&mut key);
                let mut file = File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io("creating"))?;
                file.write_all(&key)
                    .and_then(|()| file.sync_all())
                    .map_err(io("writing"))?;
                sync_dir(&keys)?;
            }
            Err(err) => return Err(io("opening")(err)),
        }
        Ok(SecretHasher { key })
    }

    /// A key for another purpose, derived from the deployment's key with a BLAKE3
    /// context string naming that purpose (hashing emails, say).
    pub fn derive_key(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.key)
    }

    /// The keyed hash under which `secret` is stored and looked up.
    pub fn hash(&self, secret: &str) -> Digest {
        Digest(*blake3::keyed_hash(&self.key, secret.as_bytes()).as_bytes())
    }
}

/// A new secret: `prefix` then 256 random bits as unpadded base64url.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A short random id (for admin tokens and the like): `prefix` then 64 random bits in hex.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// True when the data directory already has a hashing key (used by tests).
pub fn key_exists(dir: &Path) -> bool {
    DataDir::new(dir).keys().join(KEY_FILE).exists()
}
