//! Streaming the records of an embedded ledger in order, a block of whole frames at a
//! time: what replay, export, `read` and `writ verify` all walk.
//!
//! A reader never goes past the length it was given, so a reader of the live ledger sees
//! only what the writer has made durable.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use writ_schemas::RecordRef;

use super::frame::{self, FrameError, Frames, SEGMENT_HEADER_LEN};

/// Bytes read from disk at a time.
const BLOCK_BYTES: usize = 1024 * 1024;

/// What stops a walk through the segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError {
    /// The OS refused a read.
    Io(String),
    /// A segment's header is missing or names another first seq.
    BadHeader {
        /// The segment file.
        path: PathBuf,
    },
    /// Bytes where the next frame should be are not a frame.
    BadFrame {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad frame.
        offset: u64,
        /// What is wrong.
        error: FrameError,
    },
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Io(why) => f.write_str(why),
            WalkError::BadHeader { path } => {
                write!(f, "{} has a bad segment header", path.display())
            }
            WalkError::BadFrame {
                path,
                offset,
                error,
            } => {
                write!(f, "{} at byte {offset}: {error}", path.display())
            }
        }
    }
}

/// One segment to walk: its path, first seq and how far to read (`None`: to its end).
#[derive(Debug, Clone)]
pub struct SegmentSpan {
    /// The file.
    pub path: PathBuf,
    /// The seq its header must name.
    pub first_seq: u64,
    /// Bytes to read at most.
    pub len: Option<u64>,
}

/// Walks the records of `spans` in order, handing `visit` blocks of records.
/// `visit` returns `false` to stop early.
pub fn walk(
    spans: &[SegmentSpan],
    mut visit: impl FnMut(&[RecordRef<'_>]) -> bool,
) -> Result<(), WalkError> {
    for span in spans {
        if !walk_segment(span, &mut visit)? {
            break;
        }
    }
    Ok(())
}

fn walk_segment(
    span: &SegmentSpan,
    visit: &mut impl FnMut(&[RecordRef<'_>]) -> bool,
) -> Result<bool, WalkError> {
    let io = |err: std::io::Error| WalkError::Io(format!("reading {}: {err}", span.path.display()));
    let file = File::open(&span.path).map_err(io)?;
    let end = match span.len {
        Some(len) => len,
        None => file.metadata().map_err(io)?.len(),
    };
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    if end < SEGMENT_HEADER_LEN as u64 || file.read_exact_at(&mut header, 0).is_err() {
        return Err(WalkError::BadHeader {
            path: span.path.clone(),
        });
    }
    if frame::read_segment_header(&header) != Some(span.first_seq) {
        return Err(WalkError::BadHeader {
            path: span.path.clone(),
        });
    }
    // A reader thread stays one block ahead, so reading overlaps checking.
    std::thread::scope(|scope| {
        let (blocks, received) = std::sync::mpsc::sync_channel(2);
        let file = &file;
        scope.spawn(move || read_ahead(file, SEGMENT_HEADER_LEN as u64, end, &blocks));
        consume(span, received, visit)
    })
}

/// A block of whole frames and the file offset it starts at.
type Block = std::io::Result<(u64, Vec<u8>)>;

/// Sends the bytes of `file` from `pos` to `end` in blocks cut after their last whole
/// frame (found from the length prefixes alone), so no frame straddles two blocks. What
/// is left at the end of the file is sent as it is: a cut or damaged frame there is the
/// consumer's to report.
fn read_ahead(file: &File, mut pos: u64, end: u64, blocks: &SyncSender<Block>) {
    while pos < end {
        let left = usize::try_from(end - pos).unwrap_or(usize::MAX);
        let mut len = left.min(BLOCK_BYTES);
        let block = loop {
            let mut block = vec![0u8; len];
            if let Err(err) = file.read_exact_at(&mut block, pos) {
                let _ = blocks.send(Err(err));
                return;
            }
            if len == left {
                break block;
            }
            match whole_frames_len(&block) {
                0 => len = (len * 2).min(left),
                whole => {
                    block.truncate(whole);
                    break block;
                }
            }
        };
        let start = pos;
        pos += block.len() as u64;
        if blocks.send(Ok((start, block))).is_err() {
            return;
        }
    }
}

/// Bytes of the whole frames at the start of `bytes`, from their length prefixes alone.
fn whole_frames_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(prefix) = bytes.get(at..at + 4) {
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len + 4 > frame::FRAME_BYTES_MAX || bytes.len() - at < len + 4 {
            break;
        }
        at += len + 4;
    }
    at
}

/// Parses each block into records and hands them on.
fn consume(
    span: &SegmentSpan,
    blocks: Receiver<Block>,
    visit: &mut impl FnMut(&[RecordRef<'_>]) -> bool,
) -> Result<bool, WalkError> {
    let io = |err: std::io::Error| WalkError::Io(format!("reading {}: {err}", span.path.display()));
    for block in blocks {
        let (base, bytes) = block.map_err(io)?;
        let mut records = Vec::new();
        for item in Frames::new_at(&bytes, 0) {
            match item {
                Ok((record, _)) => records.push(record),
                Err((error, offset)) => {
                    if !records.is_empty() && !visit(&records) {
                        return Ok(false);
                    }
                    let offset = base + offset as u64;
                    return Err(WalkError::BadFrame {
                        path: span.path.clone(),
                        offset,
                        error,
                    });
                }
            }
        }
        if !records.is_empty() && !visit(&records) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every segment of the ledger folder `dir`, to be walked to their ends.
pub fn spans_of(dir: &Path) -> Result<Vec<SegmentSpan>, WalkError> {
    let segments = frame::list_segments(dir)
        .map_err(|err| WalkError::Io(format!("listing {}: {err}", dir.display())))?;
    Ok(segments
        .into_iter()
        .map(|(first_seq, path)| SegmentSpan {
            path,
            first_seq,
            len: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use writ_schemas::{Hash, Record, Timestamp};

    /// A segment of `count` records whose events are `size(i)` bytes, and each frame's range.
    fn segment(count: u64, size: impl Fn(u64) -> usize) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let ts =
            Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap_or_else(|| unreachable!());
        let mut bytes = frame::segment_header(1).to_vec();
        let mut ranges = Vec::new();
        let mut prev = Hash::ZERO;
        for seq in 1..=count {
            let record = Record::seal(seq, ts, prev, vec![b'x'; size(seq)]);
            prev = record.hash;
            let start = bytes.len();
            frame::encode_frame(&record, &mut bytes);
            ranges.push(start..bytes.len());
        }
        (bytes, ranges)
    }

    fn walk_file(bytes: &[u8]) -> (Vec<u64>, Result<(), WalkError>) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join(frame::segment_name(1));
        std::fs::write(&path, bytes).unwrap_or_else(|e| unreachable!("{e}"));
        let mut seqs = Vec::new();
        let span = SegmentSpan {
            path,
            first_seq: 1,
            len: None,
        };
        let result = walk(&[span], |block| {
            seqs.extend(block.iter().map(|r| r.seq));
            true
        });
        (seqs, result)
    }

    #[test]
    fn records_cross_block_boundaries_whole_and_in_order() {
        // ~3.5 MiB: several blocks, with a 200 KiB frame every 97 records.
        let (bytes, _) = segment(12_000, |seq| if seq % 97 == 0 { 200 * 1024 } else { 100 });
        let (seqs, result) = walk_file(&bytes);
        assert_eq!(result, Ok(()));
        assert_eq!(seqs, (1..=12_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_cut_in_a_later_block_is_reported_at_its_offset() {
        let (bytes, ranges) = segment(30_000, |_| 100);
        let cut = &ranges[25_000];
        let (seqs, result) = walk_file(&bytes[..cut.start + 10]);
        assert_eq!(seqs, (1..=25_000).collect::<Vec<_>>());
        match result {
            Err(WalkError::BadFrame {
                offset,
                error: FrameError::Truncated { .. },
                ..
            }) => {
                assert_eq!(offset, cut.start as u64);
            }
            other => unreachable!("expected a cut frame, got {other:?}"),
        }
    }

    #[test]
    fn an_impossible_length_in_a_later_block_is_reported_at_its_offset() {
        let (mut bytes, ranges) = segment(30_000, |_| 100);
        let bad = ranges[20_000].start;
        bytes[bad..bad + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let (seqs, result) = walk_file(&bytes);
        assert_eq!(seqs.len(), 20_000);
        match result {
            Err(WalkError::BadFrame {
                offset,
                error: FrameError::BadLength(_),
                ..
            }) => assert_eq!(offset, bad as u64),
            other => unreachable!("expected a bad length, got {other:?}"),
        }
    }
}
