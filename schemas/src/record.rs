//! The record envelope `{seq, ts, prev_hash, hash, event}` and its export line.
//!
//! An export line is itself canonical JSON, members in order `event, hash, prev_hash,
//! seq, ts`, with the event's stored bytes inlined verbatim:
//! `{"event":{...},"hash":"<64 hex>","prev_hash":"<64 hex>","seq":17,"ts":"2026-...Z"}`.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::events::{DecodeError, Event};
use crate::hash::{Hash, record_hash};
use crate::time::Timestamp;

/// One sealed record of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the ledger, gap-free from 1.
    pub seq: u64,
    /// When the sequencer appended it.
    pub ts: Timestamp,
    /// The hash of record `seq - 1` (zero for record 1).
    pub prev_hash: Hash,
    /// This record's chain hash.
    pub hash: Hash,
    /// The event's canonical bytes, exactly as hashed.
    pub event: Vec<u8>,
}

impl Record {
    /// Seals an event into the record that follows `prev_hash`.
    pub fn seal(seq: u64, ts: Timestamp, prev_hash: Hash, event: Vec<u8>) -> Record {
        let hash = record_hash(seq, &prev_hash, &ts.to_string(), &event);
        Record {
            seq,
            ts,
            prev_hash,
            hash,
            event,
        }
    }

    /// Decodes the event (schema-checked).
    pub fn decode_event(&self) -> Result<Event, DecodeError> {
        Event::decode(&self.event)
    }

    /// Appends this record's export line, with its trailing newline, to `out`.
    pub fn write_export_line(&self, out: &mut Vec<u8>) {
        self.as_ref_with(&self.ts.to_string(), |view| view.write_export_line(out));
    }

    fn as_ref_with<T>(&self, ts: &str, then: impl FnOnce(&RecordRef<'_>) -> T) -> T {
        then(&RecordRef {
            seq: self.seq,
            ts,
            prev_hash: self.prev_hash,
            hash: self.hash,
            event: &self.event,
        })
    }
}

/// A record borrowed from a buffer (a segment file, an export line): what verification reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Position in the ledger.
    pub seq: u64,
    /// The timestamp's text, as hashed.
    pub ts: &'a str,
    /// The previous record's hash.
    pub prev_hash: Hash,
    /// This record's stated hash.
    pub hash: Hash,
    /// The event's stored bytes.
    pub event: &'a [u8],
}

impl RecordRef<'_> {
    /// The hash these fields should have.
    pub fn expected_hash(&self) -> Hash {
        record_hash(self.seq, &self.prev_hash, self.ts, self.event)
    }

    /// Converts to an owned record (checking the timestamp's spelling).
    pub fn to_record(&self) -> Result<Record, crate::time::TimestampParseError> {
        Ok(Record {
            seq: self.seq,
            ts: Timestamp::parse(self.ts)?,
            prev_hash: self.prev_hash,
            hash: self.hash,
            event: self.event.to_vec(),
        })
    }

    /// Appends the export line, with its trailing newline, to `out`.
    pub fn write_export_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"event\":");
        out.extend_from_slice(self.event);
        out.extend_from_slice(b",\"hash\":\"");
        self.hash.write_hex(out);
        out.extend_from_slice(b"\",\"prev_hash\":\"");
        self.prev_hash.write_hex(out);
        out.extend_from_slice(b"\",\"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"ts\":\"");
        // A timestamp's text has no character JSON must escape (it was parsed as one).
        out.extend_from_slice(self.ts.as_bytes());
        out.extend_from_slice(b"\"}\n");
    }
}

/// An export line that cannot be read as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an export record: {0}")]
pub struct ExportLineError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportLine<'a> {
    #[serde(borrow)]
    event: &'a RawValue,
    hash: &'a str,
    prev_hash: &'a str,
    seq: u64,
    ts: &'a str,
}

/// Reads one export line (without its newline) as a borrowed record.
pub fn parse_export_line(line: &[u8]) -> Result<RecordRef<'_>, ExportLineError> {
    let parsed: ExportLine<'_> =
        serde_json::from_slice(line).map_err(|err| ExportLineError(err.to_string()))?;
    let hash =
        Hash::from_hex(parsed.hash).map_err(|err| ExportLineError(format!("hash: {err}")))?;
    let prev_hash = Hash::from_hex(parsed.prev_hash)
        .map_err(|err| ExportLineError(format!("prev_hash: {err}")))?;
    Ok(RecordRef {
        seq: parsed.seq,
        ts: parsed.ts,
        prev_hash,
        hash,
        event: parsed.event.get().as_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::is_canonical;

    #[test]
    fn export_line_is_canonical_and_round_trips() {
        let ts = Timestamp::parse("2026-11-23T09:02:53.123456Z").unwrap_or_else(|_| unreachable!());
        let record = Record::seal(
            1,
            ts,
            Hash::ZERO,
            b"{\"data\":{},\"type\":\"X\",\"v\":1}".to_vec(),
        );
        let mut line = Vec::new();
        record.write_export_line(&mut line);
        assert_eq!(line.pop(), Some(b'\n'));
        assert_eq!(is_canonical(&line), Ok(true));
        let parsed = parse_export_line(&line).map(|view| view.to_record());
        assert_eq!(parsed, Ok(Ok(record)));
    }

    #[test]
    fn export_line_errors_are_clear() {
        assert!(parse_export_line(b"not json").is_err());
        assert!(parse_export_line(b"{\"seq\":1}").is_err());
        let bad_hash =
            b"{\"event\":{},\"hash\":\"zz\",\"prev_hash\":\"00\",\"seq\":1,\"ts\":\"x\"}";
        let err = parse_export_line(bad_hash)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("hash"), "{err}");
    }
}
