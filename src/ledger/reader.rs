//! Streaming the records of an embedded ledger in order, a block of whole frames at a
//! time: what replay, export, `read` and `writ verify` all walk.
//!
//! A reader never goes past the length it was given, so a reader of the live ledger sees
//! only what the writer has made durable.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

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
    let mut pos = SEGMENT_HEADER_LEN as u64;
    let mut buf = Vec::new();
    while pos < end {
        let want = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(BLOCK_BYTES.max(frame::FRAME_BYTES_MAX));
        buf.resize(want, 0);
        file.read_exact_at(&mut buf, pos).map_err(io)?;
        let at_eof = pos + want as u64 == end;
        let mut used = 0;
        let mut records = Vec::new();
        for item in Frames::new_at(&buf, 0) {
            match item {
                Ok((record, range)) => {
                    records.push(record);
                    used = range.end;
                }
                Err((FrameError::Truncated { .. }, _)) if !at_eof && used > 0 => break,
                Err((error, offset)) => {
                    if !records.is_empty() && !visit(&records) {
                        return Ok(false);
                    }
                    return Err(WalkError::BadFrame {
                        path: span.path.clone(),
                        offset: pos + offset as u64,
                        error,
                    });
                }
            }
        }
        if !visit(&records) {
            return Ok(false);
        }
        pos += used as u64;
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
