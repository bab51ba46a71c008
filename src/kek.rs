//! Key-encryption keys: the deployment's AES-256-GCM keys that wrap the upstream secrets
//! writ holds (an MCP server's OAuth client secret, people's upstream tokens), so that the
//! ledger, its exports and the snapshots hold only ciphertext.
//!
//! Keys come from configuration: a key file (`--kek-file`, default
//! `<keys-dir>/kek.keys`, created with one random key on first start) holding one key a
//! line as `ID BASE64URL(32 bytes)`, the last line the current key; and/or `WRIT_KEK`
//! (`ID:BASE64URL`), which, when set, is the current key. Every key in either place
//! unwraps what it wrapped, so a rotation adds a key and re-wraps, and the old key is
//! removed only after. A wrap binds what the value is (its associated data), so a
//! ciphertext moved to another field or person fails to unwrap rather than reads as theirs.
//!
//! Architecture Invariant: no key-encryption key enters the ledger; a [`Wrapped`] names
//! its key by id only.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use writ_schemas::{SEALED_NONCE_BYTES, Wrapped};
use zeroize::Zeroizing;

/// The key file's name in the keys folder when `--kek-file` is not given.
pub const KEK_FILE_DEFAULT: &str = "kek.keys";
/// The associated data's prefix: the format of a wrap, so a later one cannot be confused
/// with it.
const WRAP_CONTEXT: &str = "writ wrapped v1";
/// Longest key id.
const KEK_ID_CHARS_MAX: usize = 64;

/// Why the key-encryption keys could not be loaded, or a value not unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// The key file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key that is not `ID BASE64URL(32 bytes)`.
    #[error("{0}")]
    Malformed(String),
    /// A wrapped value whose key is not configured.
    #[error(
        "the key-encryption key `{0}` is not configured; add it to the key file (--kek-file) or WRIT_KEK"
    )]
    UnknownKey(String),
    /// A wrapped value that does not open with its key (damaged, or moved).
    #[error("a wrapped value did not open with key `{0}`: it is damaged or belongs elsewhere")]
    Unopenable(String),
}

/// The configured key-encryption keys. `Debug` prints ids only.
pub struct Keks {
    current: String,
    keys: BTreeMap<String, Zeroizing<[u8; 32]>>,
    file: PathBuf,
}

impl std::fmt::Debug for Keks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keks")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keks {
    /// Loads the keys from `file` (default `<keys>/kek.keys`, created with one key when
    /// absent and no `env_key` is given) and `env_key` (`ID:BASE64URL`, the current key).
    pub fn load(keys: &Path, file: Option<&Path>, env_key: Option<&str>) -> Result<Keks, KekError> {
        let file = file_path(keys, file);
        let mut loaded = BTreeMap::new();
        let mut current = None;
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                for line in text.lines().map(str::trim) {
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let (id, key) = line.split_once(char::is_whitespace).ok_or_else(|| {
                        KekError::Malformed(format!(
                            "{}: a line is `ID BASE64URL-KEY`, not `{}`",
                            file.display(),
                            line.chars().take(16).collect::<String>()
                        ))
                    })?;
                    let id = parse_id(id)?;
                    loaded.insert(id.clone(), parse_key(&id, key.trim())?);
                    current = Some(id);
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && env_key.is_none() => {
                let id = format!("kek-{:08x}", rand::random::<u32>());
                let key = generate();
                append_key(&file, &id, &key)?;
                loaded.insert(id.clone(), key);
                current = Some(id);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KekError::Io {
                    what: "reading",
                    path: file.display().to_string(),
                    source,
                });
            }
        }
        if let Some(env_key) = env_key {
            let (id, key) = env_key.split_once(':').ok_or_else(|| {
                KekError::Malformed("WRIT_KEK is `ID:BASE64URL-KEY` (32 bytes)".into())
            })?;
            let id = parse_id(id)?;
            loaded.insert(id.clone(), parse_key(&id, key)?);
            current = Some(id);
        }
        let current = current.ok_or_else(|| {
            KekError::Malformed(format!(
                "{} holds no key-encryption key; add a line `ID BASE64URL-KEY`",
                file.display()
            ))
        })?;
        Ok(Keks {
            current,
            keys: loaded,
            file,
        })
    }

    /// The ids of every configured key, the current one among them.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The id of the key new values are wrapped under.
    pub fn current_id(&self) -> &str {
        &self.current
    }

    /// Wraps `plaintext` under the current key, bound to `context` (what the value is).
    pub fn wrap(&self, plaintext: &[u8], context: &str) -> Wrapped {
        let mut nonce = [0u8; SEALED_NONCE_BYTES];
        rand::fill(&mut nonce);
        self.wrap_with(&self.current, plaintext, context, nonce)
    }

    fn wrap_with(
        &self,
        id: &str,
        plaintext: &[u8],
        context: &str,
        nonce: [u8; SEALED_NONCE_BYTES],
    ) -> Wrapped {
        let key = self
            .keys
            .get(id)
            .unwrap_or_else(|| unreachable!("the current key is always loaded"));
        let aad = associated_data(id, context);
        let cipher = Aes256Gcm::new(&(**key).into());
        let ciphertext = cipher.encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        );
        // AES-GCM fails only past 64 GiB of plaintext.
        let ciphertext = ciphertext.unwrap_or_default();
        Wrapped {
            kek_id: id.to_owned(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ciphertext: URL_SAFE_NO_PAD.encode(ciphertext),
        }
    }

    /// Opens a wrapped value bound to `context`.
    pub fn unwrap(&self, wrapped: &Wrapped, context: &str) -> Result<Zeroizing<Vec<u8>>, KekError> {
        let key = self
            .keys
            .get(&wrapped.kek_id)
            .ok_or_else(|| KekError::UnknownKey(wrapped.kek_id.clone()))?;
        let unopenable = || KekError::Unopenable(wrapped.kek_id.clone());
        let nonce = URL_SAFE_NO_PAD
            .decode(&wrapped.nonce)
            .ok()
            .and_then(|bytes| <[u8; SEALED_NONCE_BYTES]>::try_from(bytes).ok())
            .ok_or_else(unopenable)?;
        let ciphertext = URL_SAFE_NO_PAD
            .decode(&wrapped.ciphertext)
            .map_err(|_| unopenable())?;
        let aad = associated_data(&wrapped.kek_id, context);
        Aes256Gcm::new(&(**key).into())
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| unopenable())
    }

    /// Opens a wrapped text value bound to `context`.
    pub fn unwrap_text(
        &self,
        wrapped: &Wrapped,
        context: &str,
    ) -> Result<Zeroizing<String>, KekError> {
        let bytes = self.unwrap(wrapped, context)?;
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| KekError::Unopenable(wrapped.kek_id.clone()))
    }

    /// Whether `wrapped` is under a key other than the current one (a rotation re-wraps it).
    pub fn is_stale(&self, wrapped: &Wrapped) -> bool {
        wrapped.kek_id != self.current
    }

    /// Adds a new random key to the key file as the current one; its id.
    pub fn add_key(&mut self) -> Result<String, KekError> {
        let id = format!("kek-{:08x}", rand::random::<u32>());
        let key = generate();
        append_key(&self.file, &id, &key)?;
        self.keys.insert(id.clone(), key);
        self.current = id.clone();
        Ok(id)
    }
}

/// The key file: `file` if given, else `<keys>/kek.keys`.
pub fn file_path(keys: &Path, file: Option<&Path>) -> PathBuf {
    file.map_or_else(|| keys.join(KEK_FILE_DEFAULT), Path::to_path_buf)
}

fn associated_data(id: &str, context: &str) -> String {
    format!("{WRAP_CONTEXT}\n{id}\n{context}")
}

fn generate() -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::fill(&mut key[..]);
    key
}

fn parse_id(id: &str) -> Result<String, KekError> {
    let id = id.trim();
    if id.is_empty()
        || id.len() > KEK_ID_CHARS_MAX
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(KekError::Malformed(format!(
            "a key-encryption key id is 1 to {KEK_ID_CHARS_MAX} letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(id.to_owned())
}

fn parse_key(id: &str, text: &str) -> Result<Zeroizing<[u8; 32]>, KekError> {
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text.trim()).unwrap_or_default());
    let key = <[u8; 32]>::try_from(&bytes[..]).map_err(|_| {
        KekError::Malformed(format!(
            "key-encryption key `{id}` is not 32 bytes as unpadded base64url; make one with `openssl rand 32 | basenc --base64url | tr -d =`"
        ))
    })?;
    Ok(Zeroizing::new(key))
}

/// Appends a key line to the key file (owner-only), durably.
fn append_key(file: &Path, id: &str, key: &[u8; 32]) -> Result<(), KekError> {
    let io = |what: &'static str| {
        let path = file.display().to_string();
        move |source| KekError::Io { what, path, source }
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating the folder of"))?;
    }
    let mut out = std::fs::File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(file)
        .map_err(io("opening"))?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        .map_err(io("restricting"))?;
    let line = Zeroizing::new(format!("{id} {}\n", URL_SAFE_NO_PAD.encode(key)));
    out.write_all(line.as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(io("writing"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keks(dir: &Path) -> Keks {
        Keks::load(dir, None, None).unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn a_wrapped_value_opens_only_in_its_own_context() {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let keks = keks(dir.path());
        let wrapped = keks.wrap(b"upstream-token", "connection access token alice srv");
        assert!(!wrapped.ciphertext.contains("upstream"));
        let opened = keks.unwrap(&wrapped, "connection access token alice srv");
        assert_eq!(
            opened.ok().as_deref().map(|v| v.as_slice()),
            Some(&b"upstream-token"[..])
        );
        assert!(matches!(
            keks.unwrap(&wrapped, "connection access token bob srv"),
            Err(KekError::Unopenable(_))
        ));
    }

    #[test]
    fn a_rotated_file_keeps_old_keys_for_unwrapping_and_wraps_under_the_new_one() {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let mut keks = keks(dir.path());
        let old = keks.wrap(b"secret", "ctx");
        let new_id = keks.add_key().unwrap_or_else(|err| panic!("{err}"));
        let reloaded = Keks::load(dir.path(), None, None).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(reloaded.current_id(), new_id);
        assert!(reloaded.is_stale(&old));
        assert!(reloaded.unwrap(&old, "ctx").is_ok());
        assert_eq!(reloaded.wrap(b"x", "ctx").kek_id, new_id);
    }

    #[test]
    fn an_environment_key_is_current_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
        let key = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let keks = Keks::load(dir.path(), None, Some(&format!("prod-1:{key}")))
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(keks.current_id(), "prod-1");
        assert!(!dir.path().join(KEK_FILE_DEFAULT).exists());
        assert!(matches!(
            Keks::load(dir.path(), None, Some("prod-1:short")),
            Err(KekError::Malformed(_))
        ));
        assert!(matches!(
            keks.unwrap(
                &Wrapped {
                    kek_id: "gone".into(),
                    nonce: String::new(),
                    ciphertext: String::new()
                },
                "ctx"
            ),
            Err(KekError::UnknownKey(_))
        ));
    }
}
