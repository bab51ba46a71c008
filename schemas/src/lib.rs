//! `writ-schemas`: the ledger's vocabulary and nothing else.
//!
//! Events, the record envelope, canonical JSON, the chain hash and record verification.
//! This crate does no I/O: the auditor's `writ-verify` depends on it alone, so it must
//! stay small enough to read in an afternoon. `LEDGER.md` beside it is the normative text.

mod canonical;
mod events;
mod hash;
mod ids;
mod record;
mod time;
mod verify;

pub use canonical::{CanonicalError, INTEGER_MAGNITUDE_MAX, is_canonical, to_canonical_vec};
pub use events::*;
pub use hash::{Hash, HashParseError, RECORD_HASH_CONTEXT, record_hash};
pub use ids::*;
pub use record::{ExportLineError, Record, RecordRef, parse_export_line};
pub use time::{TIMESTAMP_LEN, Timestamp, TimestampParseError};
pub use verify::{
    BadRecord, Chain, ExportVerifier, Fault, Item, check_batch, check_record, link_batch,
    verify_batch,
};

#[cfg(test)]
mod conformance;
