//! Reading a data directory without opening it for writing: verifying it, replaying it
//! to a point, exporting it, telling its audit trail. Safe beside a running server (no lock, no repair): these
//! read only, and report a torn tail as the fault it is rather than cutting it off.
//! A ledger in PostgreSQL is verified, replayed and exported the same way (`*_store`),
//! reading by seq and changing nothing in the database.

use std::io::{Read, Write};
use std::path::Path;

use writ_projections::{Head, State, snapshot};
use writ_schemas::{
    BadRecord, Chain, Event, ExportVerifier, Fault, Item, check_record, link_batch, verify_batch,
};

use crate::ledger::datadir::DataDir;
use crate::ledger::postgres::{Postgres, StoredRecord};
use crate::ledger::reader::{SegmentSpan, WalkError, spans_of, walk};
use crate::ledger::snapshots;
use crate::people::People;
use crate::trail::TrailFormat;

/// Why an offline operation could not even start or finish reading.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// The path is not something this command reads.
    #[error("{0}")]
    Input(String),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Output(std::io::Error),
}

/// The verdict on a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything holds: this many records, ending at this head.
    Intact(Chain),
    /// The first bad record.
    Broken(BadRecord),
}

/// Progress reporting: called with bytes done so far.
pub type Progress<'a> = &'a mut dyn FnMut(u64);

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn open_dir(dir: &Path) -> Result<Vec<SegmentSpan>, OfflineError> {
    DataDir::new(dir)
        .check_existing()
        .map_err(|err| OfflineError::Input(err.to_string()))?;
    spans_of(&DataDir::new(dir).ledger()).map_err(|err| OfflineError::Input(err.to_string()))
}

/// Total bytes of a data directory's segments (for progress bars).
pub fn ledger_bytes(dir: &Path) -> u64 {
    open_dir(dir)
        .map(|spans| {
            spans
                .iter()
                .filter_map(|s| std::fs::metadata(&s.path).ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn walk_fault(chain: &Chain, err: WalkError) -> BadRecord {
    BadRecord {
        seq: chain.seq + 1,
        fault: Fault::Unreadable(err.to_string()),
    }
}

/// Walks and checks every record of `spans`, folding each good one through `then`,
/// stopping at `upto` (inclusive) if given.
fn checked_walk(
    spans: &[SegmentSpan],
    chain: &mut Chain,
    upto: Option<u64>,
    progress: Progress<'_>,
    mut check: impl FnMut(&mut Chain, &[Item<'_>], usize) -> Result<(), BadRecord>,
) -> Result<(), BadRecord> {
    let threads = threads();
    let mut bad = None;
    let mut bytes_done = 0u64;
    let walked = walk(spans, |block| {
        // Records a resumed chain already covers are skipped; records past `upto` end the walk.
        let block = &block[block.partition_point(|r| r.seq <= chain.seq)..];
        let block = match upto {
            Some(last) => &block[..block.partition_point(|r| r.seq <= last)],
            None => block,
        };
        let items: Vec<Item<'_>> = block.iter().copied().map(Ok).collect();
        if let Err(fault) = check(chain, &items, threads) {
            bad = Some(fault);
            return false;
        }
        bytes_done += block
            .iter()
            .map(|r| r.event.len() as u64 + 103)
            .sum::<u64>();
        progress(bytes_done);
        upto.is_none_or(|last| chain.seq < last)
    });
    if let Some(fault) = bad {
        return Err(fault);
    }
    walked.map_err(|err| walk_fault(chain, err))
}

/// Verifies a data directory: every segment, every record, and that its snapshots name
/// records the ledger has (a snapshot beyond the end means records were cut off).
pub fn verify_dir(dir: &Path, progress: Progress<'_>) -> Result<Verdict, OfflineError> {
    let spans = open_dir(dir)?;
    let mut chain = Chain::new();
    if let Err(bad) = checked_walk(&spans, &mut chain, None, progress, verify_batch) {
        return Ok(Verdict::Broken(bad));
    }
    for (seq, path) in snapshots::list(&DataDir::new(dir).snapshots()) {
        let Ok(claimed) = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| snapshot::peek(&b).map_err(|e| e.to_string()))
        else {
            continue;
        };
        if claimed.0 != seq {
            continue;
        }
        if seq > chain.seq {
            let fault = Fault::Unreadable(format!(
                "missing: snapshot {} reflects the ledger up to record {seq}, but the ledger ends at record {}",
                path.display(),
                chain.seq
            ));
            return Ok(Verdict::Broken(BadRecord {
                seq: chain.seq + 1,
                fault,
            }));
        }
    }
    Ok(Verdict::Intact(chain))
}

/// Verifies an export file (JSON lines).
pub fn verify_export(path: &Path, progress: Progress<'_>) -> Result<Verdict, OfflineError> {
    let mut file = std::fs::File::open(path)
        .map_err(|err| OfflineError::Input(format!("cannot read {}: {err}", path.display())))?;
    let mut verifier = ExportVerifier::new(threads());
    let mut block = vec![0u8; 8 * 1024 * 1024];
    let mut done = 0u64;
    loop {
        let read = file
            .read(&mut block)
            .map_err(|err| OfflineError::Input(format!("reading {}: {err}", path.display())))?;
        if read == 0 {
            break;
        }
        if let Err(bad) = verifier.feed(&block[..read]) {
            return Ok(Verdict::Broken(bad));
        }
        done += read as u64;
        progress(done);
    }
    Ok(match verifier.finish() {
        Ok(chain) => Verdict::Intact(chain),
        Err(bad) => Verdict::Broken(bad),
    })
}

/// The state as of record `upto` (or the end), verified on the way, starting from the
/// newest snapshot at or below it whose hash the next record's `prev_hash` confirms.
pub fn replay(
    dir: &Path,
    upto: Option<u64>,
    progress: Progress<'_>,
) -> Result<State, OfflineError> {
    let start = newest_snapshot(dir, upto);
    fold_from(dir, start, upto, progress, |_, _, _| {})
}

/// Folds the ledger's records after `state`'s head (up to `upto`) into it, verifying on
/// the way; `each` sees every record's head and event with the state before it.
fn fold_from(
    dir: &Path,
    mut state: State,
    upto: Option<u64>,
    progress: Progress<'_>,
    mut each: impl FnMut(&State, Head, &Event) + Send,
) -> Result<State, OfflineError> {
    let spans = open_dir(dir)?;
    let start = state.head();
    // Resuming after a snapshot: the next record's prev_hash must be the snapshot's hash,
    // so the link check is what vouches for the snapshot.
    let mut chain = Chain::resume(start.seq, start.hash);
    let from = spans
        .partition_point(|s| s.first_seq <= start.seq + 1)
        .saturating_sub(1);
    let fold_block = |chain: &mut Chain, items: &[Item<'_>], _threads: usize| {
        pipelined(items, |batch, checked| {
            link_batch(chain, batch, checked, |record, event| {
                let head = Head {
                    seq: record.seq,
                    hash: record.hash,
                    ts: writ_schemas::Timestamp::parse(record.ts).ok(),
                };
                each(&state, head, &event);
                state.apply(head, &event);
            })
        })
    };
    checked_walk(&spans[from..], &mut chain, upto, progress, fold_block).map_err(|fault| {
        OfflineError::Input(format!(
            "the ledger does not verify: {fault}; run `writ verify` for details"
        ))
    })?;
    if let Some(last) = upto.filter(|last| *last > state.head().seq) {
        return Err(OfflineError::Input(format!(
            "--as-of-seq {last} is past the end of the ledger (its last record is {})",
            state.head().seq
        )));
    }
    Ok(state)
}

/// What `audit` did: entries written, and the snapshot it started from (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audited {
    /// Entries written.
    pub entries: u64,
    /// The record of the snapshot the replay started from; 0 when it replayed from seq 1.
    pub snapshot_seq: u64,
}

/// Writes the compliance trail from record `from_seq` (default 1) on, one sentence a line
/// with its record's seq and hash, replaying (and verifying) the ledger: from seq 1, or
/// from the newest snapshot before `from_seq`, which the next record's link vouches for.
pub fn audit(
    dir: &Path,
    from_seq: Option<u64>,
    out: &mut (dyn Write + Send),
    progress: Progress<'_>,
) -> Result<Audited, OfflineError> {
    let from_seq = from_seq.unwrap_or(1).max(1);
    let start = match from_seq - 1 {
        0 => State::new(),
        before => newest_snapshot(dir, Some(before)),
    };
    let snapshot_seq = start.head().seq;
    let mut entries = 0u64;
    let mut failed = None;
    fold_from(dir, start, None, progress, |state, head, event| {
        if head.seq < from_seq || failed.is_some() {
            return;
        }
        let entry = writ_projections::audit_entry(state, head, event);
        let line = format!(
            "{}, seq {}, hash {}\n",
            entry.sentence(),
            entry.seq,
            entry.hash
        );
        match out.write_all(line.as_bytes()) {
            Ok(()) => entries += 1,
            Err(err) => failed = Some(err),
        }
    })?;
    if let Some(err) = failed {
        return Err(OfflineError::Output(err));
    }
    out.flush().map_err(OfflineError::Output)?;
    Ok(Audited {
        entries,
        snapshot_seq,
    })
}

/// Records checked per step of a pipelined fold.
const PIPELINE_RECORDS: usize = 4096;

/// Folds chunk k on this thread while chunk k+1 is checked (hashed, decoded) on every
/// core: folding is sequential by nature, checking is not. `rayon::join` lets this thread
/// help with the checking once its fold is done, so neither core waits for the other.
fn pipelined<'a>(
    items: &[Item<'a>],
    mut fold: impl FnMut(&[Item<'a>], Vec<Result<Event, Fault>>) -> Result<(), BadRecord> + Send,
) -> Result<(), BadRecord> {
    use rayon::prelude::*;
    let check = |chunk: &[Item<'a>]| -> Vec<Result<Event, Fault>> {
        chunk
            .par_iter()
            .map(|item| match item {
                Ok(record) => check_record(record),
                Err(why) => Err(Fault::Unreadable(why.clone())),
            })
            .collect()
    };
    let chunks: Vec<&[Item<'a>]> = items.chunks(PIPELINE_RECORDS).collect();
    let Some(first) = chunks.first() else {
        return Ok(());
    };
    let mut checked = check(first);
    for (index, chunk) in chunks.iter().enumerate() {
        let next = chunks.get(index + 1);
        let (folded, ahead) = rayon::join(|| fold(chunk, checked), || next.map(|next| check(next)));
        folded?;
        checked = ahead.unwrap_or_default();
    }
    Ok(())
}

fn newest_snapshot(dir: &Path, upto: Option<u64>) -> State {
    for (seq, path) in snapshots::list(&DataDir::new(dir).snapshots()) {
        if upto.is_some_and(|last| seq > last) {
            continue;
        }
        match snapshots::read(&path) {
            Ok(state) => return state,
            Err(why) => tracing::warn!(snapshot = %path.display(), %why, "ignoring snapshot"),
        }
    }
    State::new()
}

/// Writes the ledger's export (JSON lines) to `out`, checking framing only.
pub fn export(
    dir: &Path,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64, OfflineError> {
    let spans = open_dir(dir)?;
    let mut line = Vec::with_capacity(1024 * 1024);
    let mut count = 0u64;
    let mut failed = None;
    let mut done = 0u64;
    let walked = walk(&spans, |block| {
        line.clear();
        for record in block {
            record.write_export_line(&mut line);
        }
        if let Err(err) = out.write_all(&line) {
            failed = Some(err);
            return false;
        }
        count += block.len() as u64;
        done += block
            .iter()
            .map(|r| r.event.len() as u64 + 103)
            .sum::<u64>();
        progress(done);
        true
    });
    if let Some(err) = failed {
        return Err(OfflineError::Output(err));
    }
    walked.map_err(|err| {
        OfflineError::Input(format!(
            "the ledger cannot be read past record {count}: {err}; run `writ verify`"
        ))
    })?;
    out.flush().map_err(OfflineError::Output)?;
    Ok(count)
}

/// Records read per query when the ledger is in PostgreSQL.
pub const STORE_RECORDS_PER_READ: usize = 16_384;

fn open_store(url: &str) -> Result<Postgres, OfflineError> {
    Postgres::open_existing(url).map_err(|err| OfflineError::Input(err.to_string()))
}

/// The records of the PostgreSQL ledger up to `head_seq`, in order, a page at a time,
/// unchecked (each is a verifier's item); `each` returns false to stop.
fn walk_store(
    storage: &Postgres,
    head_seq: u64,
    mut each: impl FnMut(&[Item<'_>]) -> bool,
) -> Result<(), OfflineError> {
    let mut next = 1;
    while next <= head_seq {
        let wanted = usize::try_from(head_seq - next + 1).unwrap_or(usize::MAX);
        let page = storage
            .read_stored(next, wanted.min(STORE_RECORDS_PER_READ))
            .map_err(|err| OfflineError::Input(err.to_string()))?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        next = last.seq + 1;
        let items: Vec<Item<'_>> = page.iter().map(StoredRecord::item).collect();
        if !each(&items) {
            return Ok(());
        }
    }
    Ok(())
}

/// Verifies the ledger in the PostgreSQL database `url` names, up to the head it has when
/// the verification starts: every record, the chain, and that the head row names the last
/// record. `progress` is called with records done.
pub fn verify_store(url: &str, progress: Progress<'_>) -> Result<Verdict, OfflineError> {
    let storage = open_store(url)?;
    let head = head_of(&storage)?;
    let threads = threads();
    let mut chain = Chain::new();
    let mut bad = None;
    walk_store(&storage, head.seq, |items| {
        if let Err(fault) = verify_batch(&mut chain, items, threads) {
            bad = Some(fault);
            return false;
        }
        progress(chain.seq);
        true
    })?;
    if let Some(bad) = bad {
        return Ok(Verdict::Broken(bad));
    }
    if chain.seq != head.seq || chain.hash != head.hash {
        let fault = Fault::Unreadable(format!(
            "missing: the head names record {} (hash {}), but the records end at record {} (hash {})",
            head.seq, head.hash, chain.seq, chain.hash
        ));
        return Ok(Verdict::Broken(BadRecord {
            seq: chain.seq + 1,
            fault,
        }));
    }
    Ok(Verdict::Intact(chain))
}

fn head_of(storage: &Postgres) -> Result<Head, OfflineError> {
    storage
        .head_in_database()
        .map_err(|err| OfflineError::Input(err.to_string()))
}

/// The number of records in the PostgreSQL ledger `url` names (for progress bars).
pub fn store_records(url: &str) -> u64 {
    open_store(url)
        .and_then(|storage| head_of(&storage))
        .map_or(0, |head| head.seq)
}

/// Writes the PostgreSQL ledger's export (JSON lines) to `out`; `progress` gets records done.
pub fn export_store(
    url: &str,
    out: &mut dyn Write,
    progress: Progress<'_>,
) -> Result<u64, OfflineError> {
    let storage = open_store(url)?;
    let head = head_of(&storage)?;
    let mut line = Vec::with_capacity(1024 * 1024);
    let mut count = 0u64;
    let mut failed = None;
    walk_store(&storage, head.seq, |items| {
        line.clear();
        for item in items {
            match item {
                Ok(record) => record.write_export_line(&mut line),
                Err(why) => {
                    failed = Some(OfflineError::Input(format!(
                        "record {} cannot be exported: {why}; run `writ verify --store`",
                        count + 1
                    )));
                    return false;
                }
            }
            count += 1;
        }
        if let Err(err) = out.write_all(&line) {
            failed = Some(OfflineError::Output(err));
            return false;
        }
        progress(count);
        true
    })?;
    if let Some(err) = failed {
        return Err(err);
    }
    out.flush().map_err(OfflineError::Output)?;
    Ok(count)
}

/// The state of the PostgreSQL ledger as of record `upto` (or its head), replayed from
/// record 1 and verified on the way; `progress` gets records done.
pub fn replay_store(
    url: &str,
    upto: Option<u64>,
    progress: Progress<'_>,
) -> Result<State, OfflineError> {
    fold_store(url, upto, progress, |_, _, _| {})
}

/// Folds the PostgreSQL ledger from record 1 to `upto` (or its head), verifying on the
/// way; `each` sees every record's head and event with the state before it.
fn fold_store(
    url: &str,
    upto: Option<u64>,
    progress: Progress<'_>,
    mut each: impl FnMut(&State, Head, &Event) + Send,
) -> Result<State, OfflineError> {
    let storage = open_store(url)?;
    let head = head_of(&storage)?;
    let last = upto.unwrap_or(head.seq);
    if last > head.seq {
        return Err(OfflineError::Input(format!(
            "--as-of-seq {last} is past the end of the ledger (its last record is {})",
            head.seq
        )));
    }
    let mut state = State::new();
    let mut chain = Chain::new();
    let mut bad = None;
    walk_store(&storage, last, |items| {
        let folded = pipelined(items, |batch, checked| {
            link_batch(&mut chain, batch, checked, |record, event| {
                let head = Head {
                    seq: record.seq,
                    hash: record.hash,
                    ts: writ_schemas::Timestamp::parse(record.ts).ok(),
                };
                each(&state, head, &event);
                state.apply(head, &event);
            })
        });
        if let Err(fault) = folded {
            bad = Some(fault);
            return false;
        }
        progress(chain.seq);
        true
    })?;
    match bad {
        Some(fault) => Err(OfflineError::Input(format!(
            "the ledger does not verify: {fault}; run `writ verify --store` for details"
        ))),
        None if chain.seq < last => Err(OfflineError::Input(format!(
            "the ledger's records end at record {} before its head, record {last}; run `writ verify --store` for details",
            chain.seq
        ))),
        None => Ok(state),
    }
}

/// Entries gathered before they are written as rows.
const TRAIL_ENTRIES_PER_WRITE: usize = 4096;

/// Writes trail entries as rows of `format`, a block at a time.
struct TrailWriter<'a> {
    format: TrailFormat,
    people: Option<&'a People>,
    out: &'a mut (dyn Write + Send),
    entries: Vec<writ_projections::AuditEntry>,
    bytes: Vec<u8>,
    rows: u64,
    failed: Option<std::io::Error>,
}

impl<'a> TrailWriter<'a> {
    fn new(
        format: TrailFormat,
        people: Option<&'a People>,
        out: &'a mut (dyn Write + Send),
    ) -> TrailWriter<'a> {
        TrailWriter {
            format,
            people,
            out,
            entries: Vec::with_capacity(TRAIL_ENTRIES_PER_WRITE),
            bytes: format.start(),
            rows: 0,
            failed: None,
        }
    }

    fn push(&mut self, state: &State, head: Head, event: &Event) {
        self.entries
            .push(crate::trail::entry(state, head, event, self.people));
        if self.entries.len() == TRAIL_ENTRIES_PER_WRITE {
            self.write_out();
        }
    }

    fn write_out(&mut self) {
        self.format.write_rows(&self.entries, &mut self.bytes);
        self.rows += self.entries.len() as u64;
        self.entries.clear();
        if self.failed.is_none()
            && let Err(err) = self.out.write_all(&self.bytes)
        {
            self.failed = Some(err);
        }
        self.bytes.clear();
    }

    fn finish(mut self) -> Result<u64, OfflineError> {
        self.write_out();
        if let Some(err) = self.failed {
            return Err(OfflineError::Output(err));
        }
        self.out.flush().map_err(OfflineError::Output)?;
        Ok(self.rows)
    }
}

/// Writes the compliance trail of a data directory as `format` rows, one per record, each
/// with its record's seq and hash, replaying (and verifying) the ledger from record 1:
/// the reference the server's `GET /api/v1/audit/export` is held to. Rows written.
pub fn export_audit(
    dir: &Path,
    format: TrailFormat,
    people: Option<&People>,
    out: &mut (dyn Write + Send),
    progress: Progress<'_>,
) -> Result<u64, OfflineError> {
    let mut writer = TrailWriter::new(format, people, out);
    fold_from(dir, State::new(), None, progress, |state, head, event| {
        writer.push(state, head, event);
    })?;
    writer.finish()
}

/// `export_audit` for the PostgreSQL ledger `url` names.
pub fn export_audit_store(
    url: &str,
    format: TrailFormat,
    people: Option<&People>,
    out: &mut (dyn Write + Send),
    progress: Progress<'_>,
) -> Result<u64, OfflineError> {
    let mut writer = TrailWriter::new(format, people, out);
    fold_store(url, None, progress, |state, head, event| {
        writer.push(state, head, event);
    })?;
    writer.finish()
}
