//! Snapshots: a `State` in compact binary, with the seq and hash it reflects.
//!
//! Layout (all integers big-endian):
//! `"WRITSNAP" | format u32 | seq u64 | hash [32] | body_len u64 | body | BLAKE3(all before) [32]`
//! where `body` is the state in postcard. A snapshot is a cache: the ledger is the truth,
//! and a snapshot that fails any check is ignored in favour of an older one or a replay.

use crate::state::State;
use writ_schemas::Hash;

const MAGIC: &[u8; 8] = b"WRITSNAP";
/// The snapshot format this build writes and reads. Bump it when `State`'s shape changes:
/// an older snapshot is then refused and the state rebuilt from the ledger.
pub const SNAPSHOT_FORMAT: u32 = 17;
const HEADER_LEN: usize = 8 + 4 + 8 + 32 + 8;
const CHECKSUM_LEN: usize = 32;

/// Bytes that are not a usable snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Wrong magic: some other file.
    #[error("not a writ snapshot (bad magic)")]
    NotASnapshot,
    /// Written by another format version.
    #[error("snapshot format {found} is not this build's format {SNAPSHOT_FORMAT}")]
    Format {
        /// The version found.
        found: u32,
    },
    /// Shorter than its header says.
    #[error("snapshot is truncated: {len} bytes, expected {expected}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The checksum does not match.
    #[error("snapshot checksum does not match its contents")]
    Checksum,
    /// The body does not decode, or disagrees with the header.
    #[error("snapshot body is corrupt: {0}")]
    Body(String),
}

/// Encodes `state` as a snapshot.
pub fn encode(state: &State) -> Vec<u8> {
    let head = state.head();
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&SNAPSHOT_FORMAT.to_be_bytes());
    out.extend_from_slice(&head.seq.to_be_bytes());
    out.extend_from_slice(&head.hash.0);
    let length_at = out.len();
    out.extend_from_slice(&0u64.to_be_bytes());
    // The body is written in place after the header (no second copy of a state that
    // can be hundreds of megabytes), then its length is filled in. postcard into a Vec
    // cannot fail for these types (no maps with non-string keys that it refuses, no
    // unsized sequences).
    let mut out = postcard::to_extend(state, out).unwrap_or_default();
    let body_len = (out.len().saturating_sub(HEADER_LEN)) as u64;
    if let Some(length) = out.get_mut(length_at..length_at + 8) {
        length.copy_from_slice(&body_len.to_be_bytes());
    }
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

/// The seq and hash a snapshot claims to reflect, read from its header only.
pub fn peek(bytes: &[u8]) -> Result<(u64, Hash), SnapshotError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    if bytes.len() < HEADER_LEN {
        return Err(SnapshotError::Truncated {
            len: bytes.len(),
            expected: HEADER_LEN,
        });
    }
    let found = u32::from_be_bytes(array(&bytes[8..12]));
    if found != SNAPSHOT_FORMAT {
        return Err(SnapshotError::Format { found });
    }
    Ok((
        u64::from_be_bytes(array(&bytes[12..20])),
        Hash(array(&bytes[20..52])),
    ))
}

/// Decodes a snapshot, checking its header, length and checksum.
pub fn decode(bytes: &[u8]) -> Result<State, SnapshotError> {
    let (seq, hash) = peek(bytes)?;
    let body_len = usize::try_from(u64::from_be_bytes(array(&bytes[52..60]))).unwrap_or(usize::MAX);
    let expected = HEADER_LEN
        .saturating_add(body_len)
        .saturating_add(CHECKSUM_LEN);
    if bytes.len() != expected {
        return Err(SnapshotError::Truncated {
            len: bytes.len(),
            expected,
        });
    }
    let (covered, checksum) = bytes.split_at(expected - CHECKSUM_LEN);
    if blake3::hash(covered).as_bytes() != checksum {
        return Err(SnapshotError::Checksum);
    }
    let state: State = postcard::from_bytes(&covered[HEADER_LEN..])
        .map_err(|err| SnapshotError::Body(err.to_string()))?;
    if state.head().seq != seq || state.head().hash != hash {
        return Err(SnapshotError::Body(
            "header and body disagree on the head".into(),
        ));
    }
    Ok(state)
}

fn array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}
