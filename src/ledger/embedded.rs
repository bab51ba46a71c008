//! The embedded backend: a data directory of append-only segment files.
//!
//! One write and one `fdatasync` per batch (group commit). Opening verifies the newest
//! segment record by record and recovers from a torn last write: bytes after the last
//! whole, correctly chained record that fit in one batch are moved to `torn/` and cut
//! off. Such bytes were never acknowledged, because a batch is answered only after its
//! sync. Damage further back than one batch cannot be a torn write: opening refuses.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;

use parking_lot::Mutex;
use tokio::sync::watch;
use writ_projections::Head;
use writ_schemas::{Chain, Hash, Record, Timestamp, check_record};

use super::datadir::{DataDir, sync_dir};
use super::frame::{self, Frames, SEGMENT_HEADER_LEN};
use super::reader::{SegmentSpan, walk};
use super::storage::{Storage, StorageError};

/// Bytes at which the sequencer stops adding commands to a batch.
pub const BATCH_BYTES_TARGET: usize = 4 * 1024 * 1024;
/// Largest single append, in bytes: also how far back from the end of the ledger a
/// damaged record may be and still be taken for a torn write.
pub const WRITE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Default size at which a new segment is started.
pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;

/// What opening found at the end of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Bytes of a torn, unacknowledged write that were cut off (0: none).
    pub torn_bytes: u64,
    /// Where they were kept.
    pub kept_at: Option<PathBuf>,
}

struct Writer {
    file: File,
    segment_first_seq: u64,
    len: u64,
    stopped: Option<String>,
}

/// The embedded ledger storage.
pub struct Embedded {
    dir: DataDir,
    _lock: File,
    segment_bytes_max: u64,
    writer: Mutex<Writer>,
    segments: Mutex<Vec<(u64, PathBuf, u64)>>,
    head: Mutex<Head>,
    head_tx: watch::Sender<u64>,
}

impl Embedded {
    /// Opens (creating if absent or empty) the ledger in `dir` for writing.
    pub fn open(
        dir: &DataDir,
        segment_bytes_max: u64,
    ) -> Result<(Embedded, Recovery), StorageError> {
        dir.create_or_check()?;
        let lock = dir.lock()?;
        let ledger_dir = dir.ledger();
        let mut segments = frame::list_segments(&ledger_dir)
            .map_err(|err| StorageError::io(format!("listing {}", ledger_dir.display()), err))?;
        if segments.is_empty() {
            let path = create_segment(&ledger_dir, 1)?;
            segments.push((1, path));
        }
        let (last_first_seq, last_path) = segments[segments.len() - 1].clone();
        let before = match segments.len() {
            1 => Chain::new(),
            n => last_of_segment(&segments[n - 2].1)?,
        };
        let (head, recovery, len) = recover_tail(dir, &last_path, last_first_seq, before)?;
        let file = File::options()
            .append(true)
            .open(&last_path)
            .map_err(|err| StorageError::io(format!("opening {}", last_path.display()), err))?;
        let (head_tx, _) = watch::channel(head.seq);
        let sizes = segments
            .iter()
            .map(|(first, path)| {
                (
                    *first,
                    path.clone(),
                    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
                )
            })
            .collect();
        let storage = Embedded {
            dir: dir.clone(),
            _lock: lock,
            segment_bytes_max: segment_bytes_max.max(SEGMENT_HEADER_LEN as u64 + 1),
            writer: Mutex::new(Writer {
                file,
                segment_first_seq: last_first_seq,
                len,
                stopped: None,
            }),
            segments: Mutex::new(sizes),
            head: Mutex::new(head),
            head_tx,
        };
        Ok((storage, recovery))
    }

    fn append_locked(&self, writer: &mut Writer, records: &[Record]) -> Result<(), StorageError> {
        if writer.len >= self.segment_bytes_max {
            self.rotate(writer, records[0].seq)?;
        }
        let mut bytes = Vec::with_capacity(records.iter().map(|r| r.event.len() + 103).sum());
        for record in records {
            frame::encode_frame(record, &mut bytes);
        }
        writer
            .file
            .write_all(&bytes)
            .map_err(|err| StorageError::io("appending to the ledger", err))?;
        let started = std::time::Instant::now();
        writer
            .file
            .sync_data()
            .map_err(|err| StorageError::io("syncing the ledger", err))?;
        metrics::histogram!("writ_ledger_fsync_seconds").record(started.elapsed().as_secs_f64());
        writer.len += bytes.len() as u64;
        let mut segments = self.segments.lock();
        if let Some(last) = segments.last_mut() {
            last.2 = writer.len;
        }
        Ok(())
    }

    fn rotate(&self, writer: &mut Writer, first_seq: u64) -> Result<(), StorageError> {
        let path = create_segment(&self.dir.ledger(), first_seq)?;
        writer.file = File::options()
            .append(true)
            .open(&path)
            .map_err(|err| StorageError::io(format!("opening {}", path.display()), err))?;
        writer.segment_first_seq = first_seq;
        writer.len = SEGMENT_HEADER_LEN as u64;
        self.segments.lock().push((first_seq, path, writer.len));
        Ok(())
    }
}

impl Embedded {
    /// The segments from the one holding `from_seq` on, each up to its durable length.
    fn spans_from(&self, from_seq: u64) -> Vec<SegmentSpan> {
        let segments = self.segments.lock();
        let index = segments
            .partition_point(|(first, _, _)| *first <= from_seq)
            .saturating_sub(1);
        segments[index..]
            .iter()
            .map(|(first_seq, path, len)| SegmentSpan {
                path: path.clone(),
                first_seq: *first_seq,
                len: Some(*len),
            })
            .collect()
    }
}

impl Storage for Embedded {
    fn append(&self, records: &[Record]) -> Result<(), StorageError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut writer = self.writer.lock();
        if let Some(why) = &writer.stopped {
            return Err(StorageError::Stopped(why.clone()));
        }
        let head = *self.head.lock();
        assert_eq!(records[0].seq, head.seq + 1, "appends continue the head");
        assert_eq!(records[0].prev_hash, head.hash, "appends chain to the head");
        if let Err(err) = self.append_locked(&mut writer, records) {
            // Fail-stop: what reached the disk is unknown, so nothing more is written
            // until the process restarts and recovery settles the tail.
            writer.stopped = Some(err.to_string());
            return Err(err);
        }
        *self.head.lock() = Head {
            seq: last.seq,
            hash: last.hash,
            ts: Some(last.ts),
        };
        self.head_tx.send_replace(last.seq);
        Ok(())
    }

    fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<Record>, StorageError> {
        let head = self.head();
        if from_seq == 0 || from_seq > head.seq || limit == 0 {
            return Ok(Vec::new());
        }
        let spans = self.spans_from(from_seq);
        let mut out = Vec::with_capacity(limit.min(65_536));
        let mut bad = None;
        walk(&spans, |block| {
            for view in block.iter().filter(|view| view.seq >= from_seq) {
                match view.to_record() {
                    Ok(record) => out.push(record),
                    Err(err) => bad = Some(format!("record {}: {err}", view.seq)),
                }
                if out.len() == limit || bad.is_some() {
                    return false;
                }
            }
            true
        })
        .map_err(|err| StorageError::Corrupt(err.to_string()))?;
        match bad {
            Some(why) => Err(StorageError::Corrupt(why)),
            None => Ok(out),
        }
    }

    fn head(&self) -> Head {
        *self.head.lock()
    }

    fn record_hashes(
        &self,
        from_seq: u64,
        to_seq: u64,
        visit: &mut dyn FnMut(u64, &Hash),
    ) -> Result<(), StorageError> {
        let to_seq = to_seq.min(self.head().seq);
        if from_seq == 0 || from_seq > to_seq {
            return Ok(());
        }
        // The frames are walked in place: no record is copied out to read its hash.
        walk(&self.spans_from(from_seq), |block| {
            for view in block.iter().filter(|view| view.seq >= from_seq) {
                if view.seq > to_seq {
                    return false;
                }
                visit(view.seq, &view.hash);
            }
            true
        })
        .map_err(|err| StorageError::Corrupt(err.to_string()))
    }

    fn visit_records(
        &self,
        from_seq: u64,
        to_seq: u64,
        visit: &mut dyn FnMut(&[Record]) -> bool,
    ) -> Result<(), StorageError> {
        let to_seq = to_seq.min(self.head().seq);
        if from_seq > to_seq {
            return Ok(());
        }
        let mut bad = None;
        let mut block_records = Vec::with_capacity(super::storage::RECORDS_PER_VISIT);
        walk(&self.spans_from(from_seq), |block| {
            for view in block.iter().filter(|view| view.seq >= from_seq) {
                if view.seq > to_seq {
                    break;
                }
                match view.to_record() {
                    Ok(record) => block_records.push(record),
                    Err(err) => {
                        bad = Some(format!("record {}: {err}", view.seq));
                        return false;
                    }
                }
                if block_records.len() == super::storage::RECORDS_PER_VISIT {
                    let go_on = visit(&block_records);
                    block_records.clear();
                    if !go_on {
                        return false;
                    }
                }
            }
            block.last().is_none_or(|last| last.seq < to_seq)
        })
        .map_err(|err| StorageError::Corrupt(err.to_string()))?;
        if let Some(why) = bad {
            return Err(StorageError::Corrupt(why));
        }
        if !block_records.is_empty() {
            visit(&block_records);
        }
        Ok(())
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.head_tx.subscribe()
    }
}

fn create_segment(ledger_dir: &std::path::Path, first_seq: u64) -> Result<PathBuf, StorageError> {
    let path = ledger_dir.join(frame::segment_name(first_seq));
    let io = |what: &'static str| {
        let shown = path.display().to_string();
        move |err| StorageError::io(format!("{what} {shown}"), err)
    };
    let mut file = File::options()
        .create_new(true)
        .write(true)
        .open(&path)
        .map_err(io("creating"))?;
    file.write_all(&frame::segment_header(first_seq))
        .map_err(io("writing"))?;
    file.sync_all().map_err(io("syncing"))?;
    sync_dir(ledger_dir)?;
    Ok(path)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, StorageError> {
    std::fs::read(path).map_err(|err| StorageError::io(format!("reading {}", path.display()), err))
}

/// The chain position after a sealed (not last) segment: framing only, no hashing.
fn last_of_segment(path: &std::path::Path) -> Result<Chain, StorageError> {
    let bytes = read_file(path)?;
    let mut chain = Chain::new();
    for item in Frames::new(&bytes) {
        let (view, _) = item.map_err(|(err, at)| {
            StorageError::Corrupt(format!("{} at byte {at}: {err}", path.display()))
        })?;
        chain = Chain::after(&view);
    }
    Ok(chain)
}

/// Verifies the newest segment and cuts off a torn tail. Returns the head, what was cut,
/// and the segment's length after recovery.
fn recover_tail(
    dir: &DataDir,
    path: &std::path::Path,
    first_seq: u64,
    mut chain: Chain,
) -> Result<(Head, Recovery, u64), StorageError> {
    let bytes = read_file(path)?;
    let shown = path.display();
    match frame::read_segment_header(&bytes) {
        Some(named) if named == first_seq => {}
        // A header that never finished writing: the segment was being created.
        None if bytes.len() < SEGMENT_HEADER_LEN => {
            std::fs::write(path, frame::segment_header(first_seq))
                .and_then(|()| File::open(path)?.sync_all())
                .map_err(|err| StorageError::io(format!("rewriting the header of {shown}"), err))?;
            let head = Head {
                seq: chain.seq,
                hash: chain.hash,
                ts: None,
            };
            return Ok((head, Recovery::default(), SEGMENT_HEADER_LEN as u64));
        }
        _ => {
            return Err(StorageError::Corrupt(format!(
                "{shown} has a bad segment header"
            )));
        }
    }
    let mut good_end = SEGMENT_HEADER_LEN;
    let mut last_ts = None;
    let mut fault = None;
    for item in Frames::new(&bytes) {
        let checked = item
            .map_err(|(err, _)| err.to_string())
            .and_then(|(view, range)| {
                // Check the record before linking it, so the chain never moves past a bad one.
                check_record(&view).map_err(|f| f.to_string())?;
                chain.link(&view).map_err(|f| f.to_string())?;
                Ok((view, range))
            });
        match checked {
            Ok((view, range)) => {
                good_end = range.end;
                last_ts = Timestamp::parse(view.ts).ok();
            }
            Err(why) => {
                fault = Some(why);
                break;
            }
        }
    }
    let head = Head {
        seq: chain.seq,
        hash: chain.hash,
        ts: last_ts,
    };
    let Some(why) = fault else {
        return Ok((head, Recovery::default(), good_end as u64));
    };
    let torn = bytes.len() - good_end;
    if torn > WRITE_BYTES_MAX {
        return Err(StorageError::Corrupt(format!(
            "record {} in {shown} (byte {good_end}): {why}; {torn} bytes follow it, more than one write, so this is not a torn write",
            chain.seq + 1
        )));
    }
    let kept_at = keep_torn(dir, first_seq, good_end, &bytes[good_end..])?;
    let file = File::options()
        .write(true)
        .open(path)
        .map_err(|err| StorageError::io(format!("opening {shown}"), err))?;
    file.set_len(good_end as u64)
        .and_then(|()| file.sync_all())
        .map_err(|err| StorageError::io(format!("cutting the torn tail of {shown}"), err))?;
    tracing::warn!(
        torn_bytes = torn,
        record = chain.seq + 1,
        reason = %why,
        kept_at = %kept_at.display(),
        "cut off a torn, unacknowledged write at the end of the ledger"
    );
    Ok((
        head,
        Recovery {
            torn_bytes: torn as u64,
            kept_at: Some(kept_at),
        },
        good_end as u64,
    ))
}

fn keep_torn(
    dir: &DataDir,
    first_seq: u64,
    offset: usize,
    bytes: &[u8],
) -> Result<PathBuf, StorageError> {
    let torn_dir = dir.torn();
    std::fs::create_dir_all(&torn_dir)
        .map_err(|err| StorageError::io(format!("creating {}", torn_dir.display()), err))?;
    let path = torn_dir.join(format!("{first_seq:020}-{offset}.bin"));
    let mut file = File::create(&path)
        .map_err(|err| StorageError::io(format!("creating {}", path.display()), err))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|err| StorageError::io(format!("writing {}", path.display()), err))?;
    sync_dir(&torn_dir)?;
    Ok(path)
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("dir", &self.dir.root())
            .field("head", &self.head())
            .finish()
    }
}
