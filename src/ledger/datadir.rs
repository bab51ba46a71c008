//! A writ data directory: what lives where, and how to tell one from any other folder.
//!
//! ```text
//! <data-dir>/WRIT_LEDGER      marker: "writ ledger v1"
//! <data-dir>/LOCK             held by the one process that writes
//! <data-dir>/ledger/*.seg     the records (see frame.rs)
//! <data-dir>/snapshots/*.snap projection snapshots (a cache)
//! <data-dir>/keys/            owner-only: the secret-hashing key, signing keys
//! <data-dir>/torn/            bytes of unacknowledged torn writes, kept for forensics
//! ```
//!
//! With the records in PostgreSQL (`--store`), a data directory holds only `keys/`,
//! `snapshots/` and `LOCK`, and its marker says so, so that it is never taken for an
//! (empty) embedded ledger. A directory an embedded ledger was migrated from serves too:
//! its keys are the ledger's keys, and its snapshots are checked against the records.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::storage::StorageError;

const MARKER_NAME: &str = "WRIT_LEDGER";
const MARKER_TEXT: &str = "writ ledger v1\n";
const STORE_MARKER_TEXT: &str = "writ ledger v1, records in PostgreSQL\n";

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    keys: Option<PathBuf>,
}

impl DataDir {
    /// The data directory at `root` (nothing is checked yet).
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir {
            root: root.into(),
            keys: None,
        }
    }

    /// The same directory with its keys kept in `keys` instead of `<root>/keys` (several
    /// nodes of one ledger share one keys directory; see `--keys-dir`).
    pub fn with_keys(mut self, keys: Option<PathBuf>) -> DataDir {
        self.keys = keys;
        self
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where segments live.
    pub fn ledger(&self) -> PathBuf {
        self.root.join("ledger")
    }

    /// Where snapshots live.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Where keys live (owner-only): the secret-hashing key, signing keys.
    pub fn keys(&self) -> PathBuf {
        self.keys.clone().unwrap_or_else(|| self.root.join("keys"))
    }

    /// Where torn tails are kept.
    pub fn torn(&self) -> PathBuf {
        self.root.join("torn")
    }

    /// Checks this is an existing writ data directory (for readers: verify, replay, export).
    pub fn check_existing(&self) -> Result<(), StorageError> {
        let shown = self.root.display();
        if !self.root.is_dir() {
            return Err(StorageError::NotALedger(format!(
                "{shown} is not a directory"
            )));
        }
        match std::fs::read_to_string(self.root.join(MARKER_NAME)) {
            Ok(text) if text == MARKER_TEXT => Ok(()),
            Ok(text) if text == STORE_MARKER_TEXT => Err(StorageError::NotALedger(format!(
                "{shown} holds the keys and snapshots of a ledger whose records are in PostgreSQL; pass --store with its URL"
            ))),
            Ok(_) => Err(StorageError::NotALedger(format!(
                "{shown}/{MARKER_NAME} does not say `{}`: not a ledger this writ can read",
                MARKER_TEXT.trim()
            ))),
            Err(_) => Err(StorageError::NotALedger(format!(
                "{shown} is not a writ data directory (it has no {MARKER_NAME} file)"
            ))),
        }
    }

    /// Whether nothing is at the root yet, or an empty folder.
    fn is_absent_or_empty(&self) -> Result<bool, StorageError> {
        match std::fs::read_dir(&self.root) {
            Ok(mut entries) => Ok(entries.next().is_none()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(err) => Err(StorageError::io(
                format!("reading {}", self.root.display()),
                err,
            )),
        }
    }

    /// Makes a new data directory at an absent or empty path, or checks an existing one.
    pub fn create_or_check(&self) -> Result<(), StorageError> {
        let empty = self.is_absent_or_empty()?;
        if !empty {
            return self.check_existing();
        }
        let io = |what: &'static str| {
            let at = self.root.display().to_string();
            move |err| StorageError::io(format!("{what} in {at}"), err)
        };
        std::fs::create_dir_all(self.ledger()).map_err(io("creating the ledger folder"))?;
        let mut marker =
            File::create(self.root.join(MARKER_NAME)).map_err(io("creating the marker"))?;
        marker
            .write_all(MARKER_TEXT.as_bytes())
            .map_err(io("writing the marker"))?;
        marker.sync_all().map_err(io("syncing the marker"))?;
        sync_dir(&self.root)
    }

    /// For a ledger whose records live elsewhere: makes the directory (keys, snapshots) at
    /// an absent or empty path, or checks an existing one is such a directory, or an
    /// embedded ledger's (whose segments are then not used).
    pub fn create_or_check_for_store(&self) -> Result<(), StorageError> {
        let marker = self.root.join(MARKER_NAME);
        match std::fs::read_to_string(&marker) {
            Ok(text) if text == STORE_MARKER_TEXT => return Ok(()),
            Ok(text) if text == MARKER_TEXT => {
                tracing::warn!(
                    dir = %self.root.display(),
                    "the data directory holds an embedded ledger too; with --store its keys and snapshots are used, its segments are not"
                );
                return Ok(());
            }
            _ => {}
        }
        let empty = self.is_absent_or_empty()?;
        if !empty {
            return Err(StorageError::NotALedger(format!(
                "{} is not a writ data directory (it has no {MARKER_NAME} file)",
                self.root.display()
            )));
        }
        let io = |what: &'static str| {
            let at = self.root.display().to_string();
            move |err| StorageError::io(format!("{what} in {at}"), err)
        };
        std::fs::create_dir_all(&self.root).map_err(io("creating the data directory"))?;
        let mut file = File::create(&marker).map_err(io("creating the marker"))?;
        file.write_all(STORE_MARKER_TEXT.as_bytes())
            .map_err(io("writing the marker"))?;
        file.sync_all().map_err(io("syncing the marker"))?;
        sync_dir(&self.root)
    }

    /// Takes the write lock, held until the returned file is dropped.
    pub fn lock(&self) -> Result<File, StorageError> {
        let path = self.root.join("LOCK");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|err| StorageError::io(format!("opening {}", path.display()), err))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(StorageError::Locked(self.root.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(err)) => {
                Err(StorageError::io(format!("locking {}", path.display()), err))
            }
        }
    }
}

/// Makes a directory's entries (new, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|err| StorageError::io(format!("syncing directory {}", dir.display()), err))
}
