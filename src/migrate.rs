//! `writ migrate`: copy an embedded ledger into PostgreSQL, verifying every record on the
//! way, in batches, resumable.
//!
//! The source is opened as a writer would open it (its lock taken, so no server is
//! appending to it meanwhile). The target must be empty, or hold exactly a prefix of the
//! source (an earlier migration that stopped): then copying resumes after it. Anything
//! else is refused, never overwritten. The migration is done when the target's head is
//! the source's, same seq and same hash. This module copies bytes; it decides nothing.

use std::path::Path;

use writ_projections::Head;
use writ_schemas::{Chain, Item, RecordRef, verify_batch};

use crate::ledger::datadir::DataDir;
use crate::ledger::embedded::{Embedded, SEGMENT_BYTES_MAX_DEFAULT};
use crate::ledger::postgres::Postgres;
use crate::ledger::storage::{Storage, StorageError};

/// Records copied per append (one transaction each).
pub const MIGRATE_RECORDS_PER_BATCH: usize = 4096;

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Records the target already held (a prefix of the source) before this run.
    pub resumed_after: u64,
    /// Records copied by this run.
    pub copied: u64,
    /// The head both ledgers now have.
    pub head: Head,
}

/// Why a migration did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The source or the target could not be opened, read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The target holds records that are not a prefix of the source.
    #[error("{0}")]
    NotAPrefix(String),
    /// A source record failed verification: nothing from it on was copied.
    #[error(
        "the source ledger does not verify at record {seq}: {why}; nothing from it on was copied (run `writ verify` on the data directory)"
    )]
    BadSource {
        /// The first bad record.
        seq: u64,
        /// Why.
        why: String,
    },
    /// After copying, the heads differ (someone else wrote to the target meanwhile).
    #[error("{0}")]
    Mismatch(String),
}

/// Copies the embedded ledger in `from` into the PostgreSQL database `to` names;
/// `progress` is called with (records in the target, records in the source).
pub fn migrate(
    from: &Path,
    to: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Migrated, MigrateError> {
    let data = DataDir::new(from);
    data.check_existing()?;
    let (source, _) = Embedded::open(&data, SEGMENT_BYTES_MAX_DEFAULT)?;
    let target = Postgres::open(to)?;
    let source_head = source.head();
    let start = target.head_in_database()?;
    check_prefix(&source, &target, start, source_head)?;
    let mut chain = Chain::resume(start.seq, start.hash);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    progress(start.seq, source_head.seq);
    while chain.seq < source_head.seq {
        let records = source.read(chain.seq + 1, MIGRATE_RECORDS_PER_BATCH)?;
        if records.is_empty() {
            return Err(MigrateError::BadSource {
                seq: chain.seq + 1,
                why: "missing".into(),
            });
        }
        let stamps: Vec<String> = records.iter().map(|r| r.ts.to_string()).collect();
        let items: Vec<Item<'_>> = records
            .iter()
            .zip(&stamps)
            .map(|(record, ts)| {
                Ok(RecordRef {
                    seq: record.seq,
                    ts,
                    prev_hash: record.prev_hash,
                    hash: record.hash,
                    event: &record.event,
                })
            })
            .collect();
        verify_batch(&mut chain, &items, threads).map_err(|bad| MigrateError::BadSource {
            seq: bad.seq,
            why: bad.fault.to_string(),
        })?;
        target.append(&records)?;
        progress(chain.seq, source_head.seq);
    }
    let end = target.head_in_database()?;
    if (end.seq, end.hash) != (source_head.seq, source_head.hash) {
        return Err(MigrateError::Mismatch(format!(
            "after copying, {} ends at record {} (hash {}) but the source at record {} (hash {}); was something else writing to it?",
            target.target(),
            end.seq,
            end.hash,
            source_head.seq,
            source_head.hash
        )));
    }
    Ok(Migrated {
        resumed_after: start.seq,
        copied: end.seq - start.seq,
        head: end,
    })
}

/// Refuses a target that is not empty and not a prefix of the source.
fn check_prefix(
    source: &Embedded,
    target: &Postgres,
    target_head: Head,
    source_head: Head,
) -> Result<(), MigrateError> {
    if target_head.seq == 0 {
        return Ok(());
    }
    let shown = target.target();
    if target_head.seq > source_head.seq {
        return Err(MigrateError::NotAPrefix(format!(
            "{shown} already holds {} records, more than the source's {}: it is another ledger, or one that has moved on; migrate into an empty database",
            target_head.seq, source_head.seq
        )));
    }
    let same = source
        .read(target_head.seq, 1)?
        .first()
        .is_some_and(|record| record.hash == target_head.hash);
    if !same {
        return Err(MigrateError::NotAPrefix(format!(
            "{shown} already holds {} records that are not the source's first {} (record {} differs): it holds another ledger; migrate into an empty database",
            target_head.seq, target_head.seq, target_head.seq
        )));
    }
    Ok(())
}
