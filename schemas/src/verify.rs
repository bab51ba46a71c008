//! Checking a sequence of records: gap-free seqs, an unbroken hash chain, canonical
//! timestamps that never go backwards, and events that match their schemas.
//!
//! Each record's own checks (hash, timestamp, schema) are independent of the others, so
//! [`verify_batch`] runs them on every core; only the links between neighbours are walked
//! in order. Whatever the split, the fault reported is the first one in ledger order.

use std::fmt;

use crate::events::{DecodeError, Event};
use crate::hash::Hash;
use crate::record::RecordRef;
use crate::time::Timestamp;

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The record where `expected` should stand carries another seq (missing or reordered).
    SeqOutOfOrder {
        /// The seq that belonged here.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// `prev_hash` is not the hash of the record before.
    PrevHashMismatch,
    /// The stated hash is not the hash of the record's contents.
    HashMismatch,
    /// The timestamp is not in the canonical spelling.
    BadTimestamp,
    /// The timestamp is earlier than the record before's.
    TimeWentBackwards,
    /// The event does not decode against its kind's schema.
    BadEvent(DecodeError),
    /// The bytes holding the record could not be read as a record at all.
    Unreadable(String),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::SeqOutOfOrder { expected, found } => {
                write!(
                    f,
                    "missing or out of order: found seq {found} where seq {expected} belongs"
                )
            }
            Fault::PrevHashMismatch => {
                f.write_str("prev_hash is not the hash of the record before it")
            }
            Fault::HashMismatch => {
                f.write_str("hash does not match the record's contents (altered)")
            }
            Fault::BadTimestamp => {
                f.write_str("timestamp is not RFC 3339 UTC with six fractional digits")
            }
            Fault::TimeWentBackwards => {
                f.write_str("timestamp is earlier than the record before it")
            }
            Fault::BadEvent(err) => write!(f, "event: {err}"),
            Fault::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// The first bad record of a ledger, by the seq it should have had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {fault}")]
pub struct BadRecord {
    /// The seq of the first record that fails.
    pub seq: u64,
    /// Why it fails.
    pub fault: Fault,
}

/// Checks a record on its own: timestamp spelling, hash, and the event's schema.
pub fn check_record(record: &RecordRef<'_>) -> Result<Event, Fault> {
    Timestamp::parse(record.ts).map_err(|_| Fault::BadTimestamp)?;
    if record.expected_hash() != record.hash {
        return Err(Fault::HashMismatch);
    }
    Event::decode(record.event).map_err(Fault::BadEvent)
}

/// Where a verification has got to: the last good record's seq, hash and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Seq of the last record checked (0 before the first).
    pub seq: u64,
    /// Its hash (zero before the first).
    pub hash: Hash,
    ts: String,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

impl Chain {
    /// A chain before record 1.
    pub fn new() -> Chain {
        Chain {
            seq: 0,
            hash: Hash::ZERO,
            ts: String::new(),
        }
    }

    /// Checks `record` follows the last one, and moves past it.
    pub fn link(&mut self, record: &RecordRef<'_>) -> Result<(), Fault> {
        let expected = self.seq + 1;
        if record.seq != expected {
            return Err(Fault::SeqOutOfOrder {
                expected,
                found: record.seq,
            });
        }
        if record.prev_hash != self.hash {
            return Err(Fault::PrevHashMismatch);
        }
        // Canonical timestamps have one width, so text order is time order.
        if record.ts < self.ts.as_str() {
            return Err(Fault::TimeWentBackwards);
        }
        self.seq = record.seq;
        self.hash = record.hash;
        self.ts.clear();
        self.ts.push_str(record.ts);
        Ok(())
    }
}

/// A batch item: a readable record, or the reason the bytes at that place were not one.
pub type Item<'a> = Result<RecordRef<'a>, String>;

/// Verifies `items`, which continue `chain`, using up to `threads` threads.
/// On success the chain has moved past the batch.
pub fn verify_batch(
    chain: &mut Chain,
    items: &[Item<'_>],
    threads: usize,
) -> Result<(), BadRecord> {
    let own_checks = check_all(items, threads.max(1));
    for (item, own) in items.iter().zip(own_checks) {
        let expected = chain.seq + 1;
        let bad = |fault| BadRecord {
            seq: expected,
            fault,
        };
        let record = item
            .as_ref()
            .map_err(|why| bad(Fault::Unreadable(why.clone())))?;
        chain.link(record).map_err(bad)?;
        own.map_err(bad)?;
    }
    Ok(())
}

fn check_all(items: &[Item<'_>], threads: usize) -> Vec<Result<(), Fault>> {
    let check = |item: &Item<'_>| match item {
        Ok(record) => check_record(record).map(|_| ()),
        // Reported by the in-order walk, which knows the seq it should have had.
        Err(_) => Ok(()),
    };
    if threads == 1 || items.len() < 1024 {
        return items.iter().map(check).collect();
    }
    let chunk_len = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk_len)
            .map(|chunk| scope.spawn(move || chunk.iter().map(check).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    vec![Err(Fault::Unreadable("checker thread failed".into()))]
                })
            })
            .collect()
    })
}
