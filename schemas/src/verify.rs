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

    /// A chain resumed after record `seq` whose hash is `hash` (trusted, not checked:
    /// the next record's `prev_hash` must match it).
    pub fn resume(seq: u64, hash: Hash) -> Chain {
        Chain {
            seq,
            hash,
            ts: String::new(),
        }
    }

    /// A chain whose last good record is `record` (trusted, not checked).
    pub fn after(record: &RecordRef<'_>) -> Chain {
        Chain {
            seq: record.seq,
            hash: record.hash,
            ts: record.ts.to_owned(),
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
    // Each decoded event is dropped on the thread that decoded it: verification needs
    // only the verdict, and moving hundreds of bytes per record back is most of the cost.
    let own_checks = parallel_map(items, threads, |item| own_check(item).map(drop));
    link_batch(chain, items, own_checks.into_iter().flatten(), |_, ()| ())
}

/// Links checked items to `chain` in order, handing each good record and what its own
/// check produced to `then`; stops at the first fault in ledger order.
pub fn link_batch<'a, T>(
    chain: &mut Chain,
    items: &[Item<'a>],
    own_checks: impl IntoIterator<Item = Result<T, Fault>>,
    mut then: impl FnMut(&RecordRef<'a>, T),
) -> Result<(), BadRecord> {
    for (item, own) in items.iter().zip(own_checks) {
        let expected = chain.seq + 1;
        let bad = |fault| BadRecord {
            seq: expected,
            fault,
        };
        let record = item
            .as_ref()
            .map_err(|why| bad(Fault::Unreadable(why.clone())))?;
        // The link is checked first: a record in the wrong place is named as missing
        // where it should have been, whatever else is wrong with it.
        chain.link(record).map_err(bad)?;
        then(record, own.map_err(bad)?);
    }
    Ok(())
}

/// Each item's own checks ([`check_record`]) with its decoded event, on up to `threads`
/// threads, in order.
pub fn check_batch(
    items: &[Item<'_>],
    threads: usize,
) -> impl Iterator<Item = Result<Event, Fault>> {
    parallel_map(items, threads, own_check)
        .into_iter()
        .flatten()
}

fn own_check(item: &Item<'_>) -> Result<Event, Fault> {
    match item {
        Ok(record) => check_record(record),
        // Reported by the in-order walk, which knows the seq it should have had.
        Err(why) => Err(Fault::Unreadable(why.clone())),
    }
}

/// Maps `items` on up to `threads` scoped threads; the results come back as one vector
/// per thread, in order (flattening them into one would copy every result again).
fn parallel_map<T: Sync, U: Send>(
    items: &[T],
    threads: usize,
    map: impl Fn(&T) -> U + Sync,
) -> Vec<Vec<U>> {
    let threads = threads.max(1);
    if threads == 1 || items.len() < 1024 {
        return vec![items.iter().map(map).collect()];
    }
    let chunk_len = items.len().div_ceil(threads);
    let map = &map;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk_len)
            .map(|chunk| scope.spawn(move || chunk.iter().map(map).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
            })
            .collect()
    })
}

/// Verifies an export (JSON lines) fed to it in blocks of any size.
#[derive(Debug)]
pub struct ExportVerifier {
    chain: Chain,
    carry: Vec<u8>,
    threads: usize,
    lines: u64,
}

impl ExportVerifier {
    /// A verifier expecting record 1 first.
    pub fn new(threads: usize) -> ExportVerifier {
        ExportVerifier {
            chain: Chain::new(),
            carry: Vec::new(),
            threads,
            lines: 0,
        }
    }

    /// The last good record so far.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Verifies every whole line in `carry + block`; keeps a partial last line for later.
    pub fn feed(&mut self, block: &[u8]) -> Result<(), BadRecord> {
        self.carry.extend_from_slice(block);
        let Some(last_newline) = self.carry.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let rest = self.carry.split_off(last_newline + 1);
        let whole = std::mem::replace(&mut self.carry, rest);
        self.verify_lines(&whole[..last_newline])
    }

    /// Verifies a last line without a newline; the export must end here.
    pub fn finish(mut self) -> Result<Chain, BadRecord> {
        let rest = std::mem::take(&mut self.carry);
        if !rest.is_empty() {
            self.verify_lines(&rest)?;
        }
        Ok(self.chain)
    }

    fn verify_lines(&mut self, text: &[u8]) -> Result<(), BadRecord> {
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        let first_line = self.lines + 1;
        self.lines += lines.len() as u64;
        let items = parallel_map(&lines, self.threads, |line| {
            crate::record::parse_export_line(line).map_err(|err| err.to_string())
        });
        let items: Vec<Item<'_>> = items
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, item)| {
                item.map_err(|why| format!("line {}: {why}", first_line + index as u64))
            })
            .collect();
        verify_batch(&mut self.chain, &items, self.threads)
    }
}
