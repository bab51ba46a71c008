//! The single writer: batches commands, decides them, appends once per batch, then
//! publishes and answers. Also restoring the state when a ledger opens.

use std::path::Path;

use std::sync::Arc;

use tokio::sync::mpsc;
use writ_projections::{Head, State};
use writ_schemas::{Event, Hash, Record, Timestamp, leaf_hash};

use super::embedded::{BATCH_BYTES_TARGET, WRITE_BYTES_MAX};
use super::frame::EVENT_BYTES_MAX;
use super::snapshotter::{Committed, Snapshotter};
use super::storage::{Storage, StorageError};
use super::{
    LedgerError, LedgerOptions, OpenReport, Receipt, Shared, Submission, SubmitError, snapshots,
};
use crate::decide::{Refusal, decide};

/// Records read per step while replaying.
const REPLAY_RECORDS_PER_READ: usize = 65_536;

/// The newest trustworthy snapshot plus a replay of every record after it.
pub(super) fn restore(
    storage: &dyn Storage,
    snapshot_dir: Option<&Path>,
    report: &mut OpenReport,
) -> Result<State, LedgerError> {
    let head = storage.head();
    let mut state = snapshot_dir
        .and_then(|dir| {
            snapshots::load_newest(dir, storage, head.seq, |path, why| {
                tracing::warn!(snapshot = %path.display(), %why, "ignoring snapshot");
                report.skipped_snapshots.push((path.to_path_buf(), why));
            })
        })
        .unwrap_or_default();
    report.snapshot_seq = (state.head().seq > 0).then_some(state.head().seq);
    report.replayed = replay_until(storage, &mut state, head.seq)?;
    Ok(state)
}

/// Applies every stored record after `state`'s head up to `seq_max`; how many.
pub(super) fn replay_until(
    storage: &dyn Storage,
    state: &mut State,
    seq_max: u64,
) -> Result<u64, LedgerError> {
    let mut replayed = 0;
    while state.head().seq < seq_max {
        let wanted = usize::try_from(seq_max - state.head().seq).unwrap_or(usize::MAX);
        let records = storage.read(state.head().seq + 1, wanted.min(REPLAY_RECORDS_PER_READ))?;
        if records.is_empty() {
            return Err(LedgerError::Replay {
                seq: state.head().seq + 1,
                why: "missing from storage".into(),
            });
        }
        let events = decode_all(&records)?;
        apply_records(state, &records, &events);
        replayed += records.len() as u64;
    }
    Ok(replayed)
}

/// Applies records with their decoded events, in order.
pub(super) fn apply_records(state: &mut State, records: &[Record], events: &[Event]) {
    for (record, event) in records.iter().zip(events) {
        state.apply(
            Head {
                seq: record.seq,
                hash: record.hash,
                ts: Some(record.ts),
            },
            event,
        );
    }
}

/// Decodes records' events on every core (decoding is most of a replay's cost).
pub(crate) fn decode_all(records: &[Record]) -> Result<Vec<Event>, LedgerError> {
    use rayon::prelude::*;
    records
        .par_iter()
        .map(|record| {
            record.decode_event().map_err(|err| LedgerError::Replay {
                seq: record.seq,
                why: err.to_string(),
            })
        })
        .collect()
}

struct Pending {
    reply: tokio::sync::oneshot::Sender<Result<Receipt, SubmitError>>,
    outcome: Result<crate::decide::Answer, Refusal>,
}

/// The sequencer loop: runs until every `Ledger` handle is gone, then snapshots.
pub(super) fn run(
    shared: &Shared,
    mut commands: mpsc::Receiver<Submission>,
    options: &LedgerOptions,
    snapshot_dir: Option<&Path>,
) {
    let mut state = shared.state.read().clone();
    let snapshotter = match snapshot_dir {
        Some(dir) if options.snapshot_every_records > 0 => Snapshotter::start(
            Arc::clone(&shared.storage),
            state.clone(),
            dir.to_path_buf(),
            options.snapshot_every_records,
            options.snapshots_kept,
        ),
        _ => None,
    };
    let mut carried: Option<Submission> = None;
    let mut since_close_snapshot = 0u64;
    let mut stopped: Option<String> = None;
    loop {
        let Some(first) = carried.take().or_else(|| commands.blocking_recv()) else {
            break;
        };
        if let Some(why) = &stopped {
            let _ = first.reply.send(Err(SubmitError::Unavailable(why.clone())));
            continue;
        }
        let now = options
            .clock
            .now()
            .max(state.head().ts.unwrap_or_else(|| options.clock.now()));
        let mut batch = Batch::new(state.head());
        let mut next = Some(first);
        while let Some(submission) = next.take() {
            if let Some(over) = batch.add(&mut state, submission, now) {
                carried = Some(over);
                break;
            }
            if batch.pending.len() >= options.batch_commands_max
                || batch.bytes >= BATCH_BYTES_TARGET
            {
                break;
            }
            next = commands.try_recv().ok();
        }
        if let Err(err) = commit(shared, &batch) {
            let why = err.to_string();
            for pending in batch.pending {
                let _ = pending
                    .reply
                    .send(Err(SubmitError::Unavailable(why.clone())));
            }
            if err.nothing_written() {
                // Certainly not written (another writer got there first, or the database
                // could not be reached): the write side goes back to what is durable, which
                // the read side holds, and the next batch tries again.
                tracing::error!(%why, "a batch was not written; its commands were refused");
                state = shared.state.read().clone();
                continue;
            }
            tracing::error!(%why, "storage write failed; the ledger stops taking writes");
            stopped = Some(why);
            continue;
        }
        since_close_snapshot += batch.records.len() as u64;
        let seq = state.head().seq;
        let Batch {
            records,
            events,
            pending,
            ..
        } = batch;
        for pending in pending {
            let _ = pending.reply.send(
                pending
                    .outcome
                    .map(|answer| Receipt { seq, answer })
                    .map_err(SubmitError::from),
            );
        }
        if let Some(snapshotter) = &snapshotter {
            snapshotter.offer(Committed { records, events });
        }
    }
    if let Some(snapshotter) = snapshotter {
        snapshotter.stop();
    }
    if stopped.is_none() && since_close_snapshot > 0 && options.snapshot_on_close {
        take_snapshot(snapshot_dir, &state, options.snapshots_kept);
    }
}

/// Writes a snapshot of `state` into `dir`, timed; a failure is logged, not fatal.
pub(super) fn take_snapshot(dir: Option<&Path>, state: &State, kept: Option<usize>) {
    let Some(dir) = dir else { return };
    let started = std::time::Instant::now();
    match snapshots::save(dir, state, kept) {
        Ok(_) => metrics::histogram!("writ_ledger_snapshot_seconds")
            .record(started.elapsed().as_secs_f64()),
        // A snapshot is a cache: failing to write one costs start-up time, not data.
        Err(err) => tracing::warn!(%err, "could not write a snapshot"),
    }
}

/// Appends the batch, then makes it visible.
fn commit(shared: &Shared, batch: &Batch) -> Result<(), StorageError> {
    if batch.records.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    shared.storage.append(&batch.records)?;
    metrics::histogram!("writ_ledger_append_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("writ_ledger_batch_records").record(batch.records.len() as f64);
    apply_records(&mut shared.state.write(), &batch.records, &batch.events);
    // Leaf hashes outside the lock; inside it only the few node hashes they complete.
    let leaves: Vec<Hash> = batch.records.iter().map(|r| leaf_hash(&r.hash)).collect();
    let size = {
        let mut tree = shared.tree.write();
        for (leaf, record) in leaves.into_iter().zip(&batch.records) {
            tree.push_leaf(leaf, record.hash);
        }
        tree.size()
    };
    shared.tree_size.send_replace(size);
    Ok(())
}

struct Batch {
    head: Head,
    records: Vec<Record>,
    events: Vec<Event>,
    pending: Vec<Pending>,
    bytes: usize,
}

impl Batch {
    fn new(head: Head) -> Batch {
        Batch {
            head,
            records: Vec::new(),
            events: Vec::new(),
            pending: Vec::new(),
            bytes: 0,
        }
    }

    /// Decides `submission` against the write-side state and, if it succeeds, seals and
    /// applies its events there. A command whose events would push this append past
    /// `WRITE_BYTES_MAX` is handed back, undecided in effect, to lead the next batch.
    fn add(
        &mut self,
        state: &mut State,
        submission: Submission,
        now: Timestamp,
    ) -> Option<Submission> {
        let decided = decide(state, &submission.command, now).and_then(|(events, answer)| {
            let encoded = encode_all(&events)?;
            let bytes: usize = encoded.iter().map(|e| e.len() + FRAME_OVERHEAD).sum();
            if bytes > WRITE_BYTES_MAX {
                return Err(Refusal::TooLargeToAppend(bytes, WRITE_BYTES_MAX));
            }
            Ok((events, encoded, bytes, answer))
        });
        let outcome = match decided {
            Ok((_, _, bytes, _))
                if !self.pending.is_empty() && self.bytes + bytes > WRITE_BYTES_MAX =>
            {
                return Some(submission);
            }
            Ok((events, encoded, bytes, answer)) => {
                self.bytes += bytes;
                for (event, bytes) in events.into_iter().zip(encoded) {
                    let record = Record::seal(self.head.seq + 1, now, self.head.hash, bytes);
                    self.head = Head {
                        seq: record.seq,
                        hash: record.hash,
                        ts: Some(record.ts),
                    };
                    state.apply(self.head, &event);
                    self.records.push(record);
                    self.events.push(event);
                }
                Ok(answer)
            }
            Err(refusal) => Err(refusal),
        };
        self.pending.push(Pending {
            reply: submission.reply,
            outcome,
        });
        None
    }
}

/// A frame's bytes beyond its event (see frame.rs).
const FRAME_OVERHEAD: usize = 4 + 8 + 32 + 32 + writ_schemas::TIMESTAMP_LEN;

fn encode_all(events: &[Event]) -> Result<Vec<Vec<u8>>, Refusal> {
    events
        .iter()
        .map(|event| {
            let bytes = event
                .encode()
                .map_err(|err| Refusal::Unencodable(err.to_string()))?;
            if bytes.len() > EVENT_BYTES_MAX {
                return Err(Refusal::EventTooLarge(bytes.len(), EVENT_BYTES_MAX));
            }
            Ok(bytes)
        })
        .collect()
}
