//! The embedded ledger's on-disk layout: segment files of length-prefixed record frames.
//!
//! A segment is `"WRITLOG1" | first_seq u64 | frame*`; a frame is
//! `len u32 | seq u64 | prev_hash [32] | hash [32] | ts [27] | event [len - 99]`
//! (integers big-endian). The chain hash inside each frame is the integrity check: a
//! frame whose bytes were torn or altered fails it. Segments are named by their first seq
//! (`00000000000000000001.seg`) so a reader finds a seq without opening every file.

use std::path::{Path, PathBuf};

use writ_schemas::{Hash, Record, RecordRef, TIMESTAMP_LEN};

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"WRITLOG1";
/// Bytes before the first frame of a segment.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// Bytes of a frame's fixed part after its length prefix.
const FRAME_FIXED_LEN: usize = 8 + 32 + 32 + TIMESTAMP_LEN;
/// Largest event, in canonical bytes, the ledger stores (a bigger one is refused).
pub const EVENT_BYTES_MAX: usize = 256 * 1024;
/// Largest frame (length prefix included).
pub const FRAME_BYTES_MAX: usize = 4 + FRAME_FIXED_LEN + EVENT_BYTES_MAX;

/// Appends a record's frame to `out`.
pub fn encode_frame(record: &Record, out: &mut Vec<u8>) {
    let ts = record.ts.to_string();
    assert_eq!(ts.len(), TIMESTAMP_LEN, "a ledger timestamp has one width");
    assert!(
        record.event.len() <= EVENT_BYTES_MAX,
        "events are size-checked before sealing"
    );
    let len = u32::try_from(FRAME_FIXED_LEN + record.event.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&record.seq.to_be_bytes());
    out.extend_from_slice(&record.prev_hash.0);
    out.extend_from_slice(&record.hash.0);
    out.extend_from_slice(ts.as_bytes());
    out.extend_from_slice(&record.event);
}

/// Bytes at a frame's place that are not a whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The file ends inside the frame.
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes left.
        left: usize,
    },
    /// The length prefix is impossible.
    BadLength(u32),
    /// The timestamp bytes are not text.
    BadTimestampBytes,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated { needed, left } => {
                write!(
                    f,
                    "cut short: the frame needs {needed} bytes but only {left} remain"
                )
            }
            FrameError::BadLength(len) => write!(f, "impossible frame length {len}"),
            FrameError::BadTimestampBytes => f.write_str("timestamp bytes are not text"),
        }
    }
}

/// Reads the frame at the start of `bytes`: the record and the frame's total length.
pub fn parse_frame(bytes: &[u8]) -> Result<(RecordRef<'_>, usize), FrameError> {
    if bytes.len() < 4 {
        return Err(FrameError::Truncated {
            needed: 4,
            left: bytes.len(),
        });
    }
    let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let body_len = len as usize;
    if body_len < FRAME_FIXED_LEN || body_len + 4 > FRAME_BYTES_MAX {
        return Err(FrameError::BadLength(len));
    }
    let total = 4 + body_len;
    if bytes.len() < total {
        return Err(FrameError::Truncated {
            needed: total,
            left: bytes.len(),
        });
    }
    let body = &bytes[4..total];
    let seq = u64::from_be_bytes(array(&body[0..8]));
    let prev_hash = Hash(array(&body[8..40]));
    let hash = Hash(array(&body[40..72]));
    let ts = std::str::from_utf8(&body[72..72 + TIMESTAMP_LEN])
        .map_err(|_| FrameError::BadTimestampBytes)?;
    let event = &body[FRAME_FIXED_LEN..];
    Ok((
        RecordRef {
            seq,
            ts,
            prev_hash,
            hash,
            event,
        },
        total,
    ))
}

fn array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

/// A segment's header for a segment starting at `first_seq`.
pub fn segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..].copy_from_slice(&first_seq.to_be_bytes());
    header
}

/// The first seq a segment header names, if the header is whole and right.
pub fn read_segment_header(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= SEGMENT_HEADER_LEN && &bytes[..8] == SEGMENT_MAGIC)
        .then(|| u64::from_be_bytes(array(&bytes[8..16])))
}

/// The file name of the segment starting at `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The segments in `dir`, sorted by first seq. Other files are not segments.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.len() == 20
            && let Ok(first_seq) = stem.parse::<u64>()
        {
            segments.push((first_seq, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// A whole frame's position in a segment buffer, or where the frames stop being readable.
pub struct Frames<'a> {
    bytes: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Frames of a segment buffer, after its header.
    pub fn new(segment: &'a [u8]) -> Frames<'a> {
        Frames::new_at(segment, SEGMENT_HEADER_LEN.min(segment.len()))
    }

    /// Frames of a buffer, from byte `offset` (a frame boundary) on.
    pub fn new_at(bytes: &'a [u8], offset: usize) -> Frames<'a> {
        Frames {
            bytes,
            offset,
            failed: false,
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(RecordRef<'a>, std::ops::Range<usize>), (FrameError, usize)>;

    /// Each frame with its byte range; after an unreadable frame, the error and its offset,
    /// then nothing.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.bytes.len() {
            return None;
        }
        let at = self.offset;
        match parse_frame(&self.bytes[at..]) {
            Ok((record, len)) => {
                self.offset += len;
                Some(Ok((record, at..at + len)))
            }
            Err(err) => {
                self.failed = true;
                Some(Err((err, at)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_schemas::Timestamp;

    #[test]
    fn frames_round_trip_and_refuse_damage() {
        let ts =
            Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap_or_else(|| unreachable!());
        let record = Record::seal(1, ts, Hash::ZERO, b"{\"a\":1}".to_vec());
        let mut segment = segment_header(1).to_vec();
        encode_frame(&record, &mut segment);
        let frames: Vec<_> = Frames::new(&segment).collect();
        assert_eq!(frames.len(), 1);
        let parsed = frames[0]
            .as_ref()
            .map(|(view, range)| (view.to_record(), range.start));
        assert_eq!(parsed, Ok((Ok(record), SEGMENT_HEADER_LEN)));
        let cut = &segment[..segment.len() - 1];
        assert!(matches!(
            Frames::new(cut).next(),
            Some(Err((FrameError::Truncated { .. }, 16)))
        ));
        let mut huge = segment.clone();
        huge[16] = 0xff;
        assert!(matches!(
            Frames::new(&huge).next(),
            Some(Err((FrameError::BadLength(_), 16)))
        ));
        assert_eq!(read_segment_header(&segment), Some(1));
        assert_eq!(read_segment_header(b"WRITLOG"), None);
    }
}
