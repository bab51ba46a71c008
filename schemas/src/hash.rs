//! The 32-byte BLAKE3 digests that chain records together, and the chain hash itself.
//!
//! The layout hashed here is specified byte for byte in `schemas/LEDGER.md`; an auditor
//! re-derives it in any language from that file alone, so it must never change for
//! records already written (a new layout would be a new context string, "v2").

use std::cell::RefCell;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The BLAKE3 key-derivation context of the record chain hash.
pub const RECORD_HASH_CONTEXT: &str = "writ ledger v1 record";

/// A 32-byte digest, written as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev_hash` of record 1: 32 zero bytes.
    pub const ZERO: Hash = Hash([0; 32]);

    /// Parses 64 lowercase hex characters (uppercase is refused: one value, one spelling).
    pub fn from_hex(text: &str) -> Result<Hash, HashParseError> {
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(HashParseError);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| HashParseError)?;
        Ok(Hash(bytes))
    }

    /// The 64 lowercase hex characters of this digest.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Writes the 64 hex characters into `out` without allocating.
    pub fn write_hex(&self, out: &mut Vec<u8>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for byte in self.0 {
            out.push(DIGITS[usize::from(byte >> 4)]);
            out.push(DIGITS[usize::from(byte & 0x0f)]);
        }
    }
}

/// A digest that was not 64 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a hash must be 64 lowercase hex characters")]
pub struct HashParseError;

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return <[u8; 32]>::deserialize(deserializer).map(Hash);
        }
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Hash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

thread_local! {
    // One hasher per thread, reset between records: a fresh derive-key hasher costs a
    // compression of the context string, and cloning one copies ~1.8 KB.
    static RECORD_HASHER: RefCell<blake3::Hasher> = RefCell::new(blake3::Hasher::new_derive_key(RECORD_HASH_CONTEXT));
}

/// The chain hash of a record (see LEDGER.md, "The record hash"):
/// `BLAKE3-derive_key("writ ledger v1 record", u64be(seq) || prev_hash || u32be(len(ts)) || ts || event)`.
pub fn record_hash(seq: u64, prev_hash: &Hash, ts: &str, event: &[u8]) -> Hash {
    let ts_len = u32::try_from(ts.len()).unwrap_or(u32::MAX);
    RECORD_HASHER.with_borrow_mut(|hasher| {
        hasher.reset();
        hasher.update(&seq.to_be_bytes());
        hasher.update(&prev_hash.0);
        hasher.update(&ts_len.to_be_bytes());
        hasher.update(ts.as_bytes());
        hasher.update(event);
        Hash(*hasher.finalize().as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_other_spellings() {
        let hash = record_hash(1, &Hash::ZERO, "2026-01-01T00:00:00.000000Z", b"{}");
        assert_eq!(Hash::from_hex(&hash.to_hex()), Ok(hash));
        assert_eq!(
            Hash::from_hex(&hash.to_hex().to_uppercase()),
            Err(HashParseError)
        );
        assert_eq!(Hash::from_hex("00"), Err(HashParseError));
        let mut written = Vec::new();
        hash.write_hex(&mut written);
        assert_eq!(written, hash.to_hex().into_bytes());
    }

    #[test]
    fn every_input_field_changes_the_hash() {
        let ts = "2026-01-01T00:00:00.000000Z";
        let base = record_hash(1, &Hash::ZERO, ts, b"{}");
        assert_ne!(base, record_hash(2, &Hash::ZERO, ts, b"{}"));
        assert_ne!(base, record_hash(1, &Hash([1; 32]), ts, b"{}"));
        assert_ne!(
            base,
            record_hash(1, &Hash::ZERO, "2026-01-01T00:00:00.000001Z", b"{}")
        );
        assert_ne!(base, record_hash(1, &Hash::ZERO, ts, b"{ }"));
    }

    #[test]
    fn record_hash_is_blake3_derive_key_over_the_documented_layout() {
        let ts = "2026-01-01T00:00:00.000000Z";
        let mut material = Vec::new();
        material.extend_from_slice(&7u64.to_be_bytes());
        material.extend_from_slice(&[9; 32]);
        material.extend_from_slice(&(ts.len() as u32).to_be_bytes());
        material.extend_from_slice(ts.as_bytes());
        material.extend_from_slice(b"{\"a\":1}");
        let expected = blake3::derive_key(RECORD_HASH_CONTEXT, &material);
        assert_eq!(record_hash(7, &Hash([9; 32]), ts, b"{\"a\":1}").0, expected);
    }
}
