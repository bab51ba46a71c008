//! People's keys as files: `<data-dir>/keys/people/<user id>.key`, 32 bytes each,
//! owner-only, beside the deployment's other keys and never in the ledger, a snapshot or
//! an export.
//!
//! A key is written to a temporary file, synced, and linked into place (a link never
//! replaces an existing key), then the folder is synced: a crash leaves no key or a whole
//! one. Destroying one overwrites it with zeros, syncs, removes it and syncs the folder, so
//! that once `destroy` returns the key is gone from the directory even after a crash.
//! (What a file system or a disk keeps of overwritten blocks is beyond a program's reach:
//! README "Erasure" says what an operator does about backups and media.)

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use writ_schemas::UserId;

use super::{PersonKey, PersonKeyStore};
use crate::ledger::datadir::{DataDir, sync_dir};
use crate::ledger::storage::StorageError;

/// Longest user id that names a key file.
const USER_ID_CHARS_MAX: usize = 128;

/// People's keys in a data directory. One writer process holds the data directory (its
/// `LOCK`), so the store needs no locking of its own beyond the link's no-clobber rule.
#[derive(Debug, Clone)]
pub struct FileKeys {
    dir: PathBuf,
}

impl FileKeys {
    /// The store in `data`'s `keys/people/`, created owner-only if missing.
    pub fn open(data: &DataDir) -> Result<FileKeys, StorageError> {
        let dir = FileKeys::dir_of(data);
        let io = |what: &'static str| {
            let shown = dir.display().to_string();
            move |err| StorageError::io(format!("{what} {shown}"), err)
        };
        std::fs::create_dir_all(&dir).map_err(io("creating"))?;
        for folder in [data.keys(), dir.clone()] {
            std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700))
                .map_err(io("restricting"))?;
        }
        Ok(FileKeys { dir })
    }

    /// The store of a data directory, for reading only: nothing is created.
    pub fn existing(data: &DataDir) -> FileKeys {
        FileKeys {
            dir: FileKeys::dir_of(data),
        }
    }

    /// Where a data directory keeps people's keys.
    pub fn dir_of(data: &DataDir) -> PathBuf {
        data.keys().join("people")
    }

    /// The key file of a person; a user id that could not name a file (writ makes UUIDs)
    /// has none, so it never has a key.
    fn path(&self, user_id: &UserId) -> Option<PathBuf> {
        let id = user_id.as_str();
        let plain = !id.is_empty()
            && id.len() <= USER_ID_CHARS_MAX
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        plain.then(|| self.dir.join(format!("{id}.key")))
    }
}

fn read_key(path: &Path) -> Result<Option<PersonKey>, StorageError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StorageError::io(format!("opening {}", path.display()), err)),
    };
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(32));
    file.read_to_end(&mut bytes)
        .map_err(|err| StorageError::io(format!("reading {}", path.display()), err))?;
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        StorageError::Corrupt(format!(
            "{} holds {} bytes, not a 32-byte key; restore it from backup, or erase the person",
            path.display(),
            bytes.len()
        ))
    })?;
    Ok(Some(PersonKey::from_bytes(key)))
}

impl PersonKeyStore for FileKeys {
    fn get(&self, user_id: &UserId) -> Result<Option<PersonKey>, StorageError> {
        match self.path(user_id) {
            Some(path) => read_key(&path),
            None => Ok(None),
        }
    }

    fn put_new(&self, user_id: &UserId, key: PersonKey) -> Result<PersonKey, StorageError> {
        let path = self.path(user_id).ok_or_else(|| {
            StorageError::Corrupt(format!(
                "user id `{}` cannot name a key file (letters, digits, '-' and '_', at most {USER_ID_CHARS_MAX})",
                user_id.as_str().chars().take(USER_ID_CHARS_MAX).collect::<String>()
            ))
        })?;
        let staged = path.with_extension("key.new");
        let io = |what: &'static str, at: &Path| {
            let shown = at.display().to_string();
            move |err| StorageError::io(format!("{what} {shown}"), err)
        };
        let mut file = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staged)
            .map_err(io("creating", &staged))?;
        file.write_all(key.bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("writing", &staged))?;
        let linked = std::fs::hard_link(&staged, &path);
        std::fs::remove_file(&staged).map_err(io("removing", &staged))?;
        match linked {
            Ok(()) => {}
            // Someone has a key already: theirs stands.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(io("linking", &path)(err)),
        }
        sync_dir(&self.dir)?;
        read_key(&path)?.ok_or_else(|| {
            StorageError::Corrupt(format!("{} vanished as it was written", path.display()))
        })
    }

    fn destroy(&self, user_id: &UserId) -> Result<bool, StorageError> {
        let Some(path) = self.path(user_id) else {
            return Ok(false);
        };
        let io = |what: &'static str| {
            let shown = path.display().to_string();
            move |err| StorageError::io(format!("{what} {shown}"), err)
        };
        let mut file = match File::options().write(true).open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(io("opening")(err)),
        };
        let length = file.metadata().map_err(io("reading"))?.len();
        let zeros = vec![0u8; usize::try_from(length).unwrap_or(32).max(32)];
        file.write_all(&zeros)
            .and_then(|()| file.sync_all())
            .map_err(io("overwriting"))?;
        drop(file);
        std::fs::remove_file(&path).map_err(io("removing"))?;
        sync_dir(&self.dir)?;
        Ok(true)
    }
}
