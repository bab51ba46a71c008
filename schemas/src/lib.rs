//! `writ-schemas`: the ledger's vocabulary and nothing else.
//!
//! Events, the record envelope, canonical JSON, the chain hash, record verification and
//! the Merkle tree over record hashes (proofs and their verification).
//! This crate does no I/O: the auditor's `writ-verify` depends on it alone, so it must
//! stay small enough to read in an afternoon. `LEDGER.md` beside it is the normative text.

mod canonical;
mod checkpoint;
mod events;
mod hash;
mod ids;
mod merkle;
mod record;
mod time;
mod verify;

pub use canonical::{CanonicalError, INTEGER_MAGNITUDE_MAX, is_canonical, to_canonical_vec};
pub use checkpoint::{
    CHECKPOINT_NOTE_BYTES_MAX, Checkpoint, NOTE_ED25519, NoteError, NoteKey, check_key_name,
    decode_public_key, open_checkpoint,
};
pub use events::*;
pub use hash::{Hash, HashParseError, RECORD_HASH_CONTEXT, record_hash};
pub use ids::*;
pub use merkle::{
    Frontier, MERKLE_LEAF_PREFIX, MERKLE_NODE_PREFIX, MERKLE_TREE_SIZE_MAX, ProofError,
    consistency_proof, empty_root, inclusion_proof, leaf_hash, node_hash, root_of, split_point,
    verify_consistency, verify_inclusion,
};
pub use record::{ExportLineError, Record, RecordRef, parse_export_line};
pub use time::{TIMESTAMP_LEN, Timestamp, TimestampParseError};
pub use verify::{
    BadRecord, Chain, ExportVerifier, Fault, Item, check_batch, check_record, link_batch,
    verify_batch,
};

#[cfg(test)]
mod conformance;
