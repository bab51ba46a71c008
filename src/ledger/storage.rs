//! The storage trait every ledger backend implements: append a batch durably, read a
//! range, report the head, and wake subscribers when the head moves.
//!
//! Architecture Invariant: `append` returns only once the records are durable (fsync, or
//! a database commit); `read` and `head` never show a record `append` has not returned.

use tokio::sync::watch;
use writ_projections::Head;
use writ_schemas::{Hash, Record};

/// Why storage could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The data directory is not a writ ledger.
    #[error("{0}")]
    NotALedger(String),
    /// The ledger is damaged somewhere a crash cannot explain.
    #[error("ledger is corrupt: {0}; run `writ verify` on the data directory for details")]
    Corrupt(String),
    /// Another process has the ledger open for writing.
    #[error("{0} is in use by another writ process (its LOCK file is held)")]
    Locked(String),
    /// An earlier write failed; the ledger stopped taking writes (fail-stop).
    #[error("the ledger stopped taking writes after a storage failure: {0}")]
    Stopped(String),
    /// The storage could not be reached; a write that fails this way wrote nothing.
    #[error("{0}")]
    Unreachable(String),
    /// Another writer appended first: the batch continued record `expected_head`, but the
    /// ledger's head had moved to `found_head`. Nothing of the batch was written.
    #[error(
        "another writer appended to the ledger: this batch continued record {expected_head}, but the ledger's head is now record {found_head}; nothing was written (the node catches up and decides again; retry)"
    )]
    Conflict {
        /// The head the batch was built on.
        expected_head: u64,
        /// The head the ledger had.
        found_head: u64,
    },
    /// The database answered with an error, or stopped answering, mid-request.
    #[error("{0}")]
    Database(String),
}

impl StorageError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StorageError {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether a failed append certainly wrote nothing, so the writer may go on from the
    /// head it had. Any other failure leaves what reached storage unknown: fail-stop.
    pub fn nothing_written(&self) -> bool {
        matches!(
            self,
            StorageError::Conflict { .. } | StorageError::Unreachable(_)
        )
    }
}

/// Records handed to a `visit_records` visitor at once, at most.
pub const RECORDS_PER_VISIT: usize = 4096;

/// A ledger backend. One sequencer per ledger appends; any number read.
///
/// The trait is synchronous: the sequencer is a dedicated OS thread, and a backend that
/// speaks to a database asynchronously (PostgreSQL) blocks on its own runtime inside it.
pub trait Storage: Send + Sync {
    /// Appends records that continue the head, durably, in one write where possible.
    fn append(&self, records: &[Record]) -> Result<(), StorageError>;

    /// Up to `limit` records from `from_seq` on, in order (fewer at the head).
    fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<Record>, StorageError>;

    /// The last durable record.
    fn head(&self) -> Head;

    /// Hands `visit` the seq and hash of every record from `from_seq` to `to_seq`, in
    /// order: what rebuilding the Merkle tree reads. A backend that can skip decoding
    /// whole records should.
    fn record_hashes(
        &self,
        from_seq: u64,
        to_seq: u64,
        visit: &mut dyn FnMut(u64, &Hash),
    ) -> Result<(), StorageError> {
        let mut next = from_seq;
        while next <= to_seq {
            let wanted = usize::try_from(to_seq - next + 1).unwrap_or(usize::MAX);
            let records = self.read(next, wanted.min(65_536))?;
            if records.is_empty() {
                return Err(StorageError::Corrupt(format!("record {next} is missing")));
            }
            for record in &records {
                visit(record.seq, &record.hash);
            }
            next += records.len() as u64;
        }
        Ok(())
    }

    /// Hands `visit` the records from `from_seq` to `to_seq` in order, a block at a time,
    /// until it returns false: what a long read (the audit trail, an export) walks. The
    /// default reads by seq a page at a time; a backend whose reads by seq start from the
    /// top of a segment walks it once instead.
    fn visit_records(
        &self,
        from_seq: u64,
        to_seq: u64,
        visit: &mut dyn FnMut(&[Record]) -> bool,
    ) -> Result<(), StorageError> {
        let mut next = from_seq.max(1);
        while next <= to_seq {
            let wanted = usize::try_from(to_seq - next + 1).unwrap_or(usize::MAX);
            let records = self.read(next, wanted.min(RECORDS_PER_VISIT))?;
            if records.is_empty() {
                return Err(StorageError::Corrupt(format!("record {next} is missing")));
            }
            next += records.len() as u64;
            if !visit(&records) {
                break;
            }
        }
        Ok(())
    }

    /// Watches the durable head's seq: a wake-up; read by seq to catch up.
    fn subscribe(&self) -> watch::Receiver<u64>;

    /// Asks the storage for its head now, moving `head()` on if others appended (a store
    /// shared by several nodes); the head `head()` then gives.
    fn refresh_head(&self) -> Result<Head, StorageError> {
        Ok(self.head())
    }
}
