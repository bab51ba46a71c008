//! Snapshot files: writing them atomically, and finding the newest one the ledger vouches
//! for. A snapshot is only a cache, so any doubt about one means using an older one or
//! replaying from record 1, never refusing to start.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use writ_projections::{State, snapshot};

use super::datadir::sync_dir;
use super::storage::{Storage, StorageError};

/// Writes `state`'s snapshot into `dir` atomically (temp file, fsync, rename, fsync dir),
/// then removes all but the newest `kept` (none removed when `kept` is `None`: every
/// snapshot is also where a question about the past starts its replay).
pub fn save(dir: &Path, state: &State, kept: Option<usize>) -> Result<PathBuf, StorageError> {
    std::fs::create_dir_all(dir)
        .map_err(|err| StorageError::io(format!("creating {}", dir.display()), err))?;
    let seq = state.head().seq;
    let path = dir.join(format!("{seq:020}.snap"));
    let temp = dir.join(format!("{seq:020}.snap.partial"));
    let bytes = snapshot::encode(state);
    let io = |what: &'static str| {
        let shown = temp.display().to_string();
        move |err| StorageError::io(format!("{what} {shown}"), err)
    };
    let mut file = File::create(&temp).map_err(io("creating"))?;
    file.write_all(&bytes).map_err(io("writing"))?;
    file.sync_all().map_err(io("syncing"))?;
    std::fs::rename(&temp, &path).map_err(io("renaming"))?;
    sync_dir(dir)?;
    let Some(kept) = kept else {
        return Ok(path);
    };
    for old in list(dir).into_iter().skip(kept.max(1)) {
        // A stale snapshot left behind costs only disk; it is never trusted blindly.
        let _ = std::fs::remove_file(old.1);
    }
    Ok(path)
}

/// Snapshot files in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let seq = name.strip_suffix(".snap")?.parse().ok()?;
            Some((seq, entry.path()))
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found
}

/// Reads and decodes one snapshot file; the error says why it cannot be used.
pub fn read(path: &Path) -> Result<State, String> {
    let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
    snapshot::decode(&bytes).map_err(|err| err.to_string())
}

/// The newest snapshot at or below `seq_max` that decodes and whose (seq, hash) is a
/// record of `storage`. Snapshots that fail are reported through `skipped`.
pub fn load_newest(
    dir: &Path,
    storage: &dyn Storage,
    seq_max: u64,
    mut skipped: impl FnMut(&Path, String),
) -> Option<State> {
    for (seq, path) in list(dir) {
        if seq > seq_max || seq == 0 {
            continue;
        }
        let state = match read(&path) {
            Ok(state) => state,
            Err(why) => {
                skipped(&path, why);
                continue;
            }
        };
        match storage.read(seq, 1) {
            Ok(records)
                if records
                    .first()
                    .is_some_and(|r| r.seq == seq && r.hash == state.head().hash) =>
            {
                return Some(state);
            }
            Ok(_) => skipped(&path, format!("the ledger's record {seq} has another hash")),
            Err(err) => skipped(&path, err.to_string()),
        }
    }
    None
}
