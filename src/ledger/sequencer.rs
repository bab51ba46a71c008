//! The single writer: batches commands, decides them, appends once per batch, then
//! publishes and answers. Also restoring the state when a ledger opens, and following
//! the records other nodes append to a shared store.
//!
//! With several nodes over one store (PostgreSQL), each node's sequencer is the single
//! writer of its own process only; the store decides who appends after a given head. The
//! sequencer therefore catches up before it decides: the records it has not applied yet
//! (another node's) are read by seq, their chain links checked, and applied to the write
//! side and published to the read side, the Merkle tree and the snapshotter, in order. An
//! append that lost the race (`StorageError::Conflict`) wrote nothing: the sequencer
//! catches up and decides the same commands again against the new head, at most
//! [`APPEND_CONFLICT_RETRIES_MAX`] times, so a command is always validated against the
//! state at the head its records follow.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use writ_projections::{Head, State};
use writ_schemas::{Event, Hash, Record, Timestamp, leaf_hash, record_hash};

use super::embedded::{BATCH_BYTES_TARGET, WRITE_BYTES_MAX};
use super::frame::EVENT_BYTES_MAX;
use super::snapshotter::{Committed, Snapshotter};
use super::storage::{Storage, StorageError};
use super::{
    LedgerError, LedgerOptions, Message, OpenReport, Receipt, Shared, Submission, SubmitError,
    snapshots,
};
use crate::decide::{Refusal, decide};

/// Records read per step while replaying.
const REPLAY_RECORDS_PER_READ: usize = 65_536;

/// Records read per step while following another node's appends.
const FOLLOW_RECORDS_PER_READ: usize = 8_192;

/// Times a batch that lost the race to another node's append is decided again (after
/// catching up) before its commands are refused as unavailable. Every lost race means
/// another node appended, so the ledger as a whole always moves on.
pub const APPEND_CONFLICT_RETRIES_MAX: u32 = 64;

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
    submission: Submission,
    outcome: Result<crate::decide::Answer, Refusal>,
}

/// The sequencer loop: runs until every `Ledger` handle is gone, then snapshots.
pub(super) fn run(
    shared: &Shared,
    mut commands: mpsc::Receiver<Message>,
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
    let mut writer = Writer {
        shared,
        options,
        snapshotter: snapshotter.as_ref(),
        since_close_snapshot: 0,
        stopped: None,
    };
    let mut carried: VecDeque<Submission> = VecDeque::new();
    // Set by `Message::Stop`: what was taken before it is written, then the loop ends.
    let mut stopping = false;
    loop {
        let first = match carried.pop_front() {
            Some(submission) => submission,
            None if stopping => break,
            None => match commands.blocking_recv() {
                None | Some(Message::Stop) => break,
                Some(Message::Follow) => {
                    writer.follow(&mut state);
                    continue;
                }
                Some(Message::Command(submission)) => submission,
            },
        };
        if let Some(why) = &writer.stopped {
            let _ = first.reply.send(Err(SubmitError::Unavailable(why.clone())));
            continue;
        }
        let mut submissions = vec![first];
        while submissions.len() < options.batch_commands_max {
            if let Some(submission) = carried.pop_front() {
                submissions.push(submission);
                continue;
            }
            match commands.try_recv() {
                Ok(Message::Command(submission)) => submissions.push(submission),
                // The batch catches up before it is decided.
                Ok(Message::Follow) => {}
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        writer.write(&mut state, submissions, &mut carried);
    }
    let (stopped, since_close_snapshot) = (writer.stopped.is_some(), writer.since_close_snapshot);
    drop(writer);
    if let Some(snapshotter) = snapshotter {
        snapshotter.stop();
    }
    if !stopped && since_close_snapshot > 0 && options.snapshot_on_close {
        take_snapshot(snapshot_dir, &state, options.snapshots_kept);
    }
}

/// What the sequencer keeps between batches besides its state.
struct Writer<'a> {
    shared: &'a Shared,
    options: &'a LedgerOptions,
    snapshotter: Option<&'a Snapshotter>,
    since_close_snapshot: u64,
    /// Why writes stopped (fail-stop), once they have.
    stopped: Option<String>,
}

impl Writer<'_> {
    /// Decides `submissions` (in order) as one batch after catching up, appends it, and
    /// answers; on a lost race catches up and decides them again. Commands that did not
    /// fit the batch go to `carried`, to lead the next one.
    fn write(
        &mut self,
        state: &mut State,
        mut submissions: Vec<Submission>,
        carried: &mut VecDeque<Submission>,
    ) {
        let mut conflicts = 0u32;
        loop {
            if let Err(why) = self.catch_up(state) {
                refuse_all(submissions, &why);
                return;
            }
            let (batch, over) = self.decide(state, submissions);
            match commit(self.shared, &batch) {
                Ok(()) => {
                    self.answer(state, batch);
                    for submission in over.into_iter().rev() {
                        carried.push_front(submission);
                    }
                    return;
                }
                Err(StorageError::Conflict { .. }) if conflicts < APPEND_CONFLICT_RETRIES_MAX => {
                    // Another node appended first; nothing of this batch was written. The
                    // write side goes back to what is durable (the read side) and catches up.
                    conflicts += 1;
                    metrics::counter!("writ_ledger_append_conflicts_total").increment(1);
                    *state = self.shared.state.read().clone();
                    submissions = batch.into_submissions(over);
                }
                Err(err) => {
                    let why = err.to_string();
                    if err.nothing_written() {
                        // Certainly not written (another writer kept winning, or the database
                        // could not be reached): the write side goes back to what is durable,
                        // which the read side holds, and the next batch tries again.
                        tracing::error!(%why, conflicts, "a batch was not written; its commands were refused");
                        *state = self.shared.state.read().clone();
                    } else {
                        tracing::error!(%why, "storage write failed; the ledger stops taking writes");
                        self.stopped = Some(why.clone());
                    }
                    refuse_all(batch.into_submissions(over), &why);
                    return;
                }
            }
        }
    }

    /// Decides `submissions` against `state` into a batch at its head; the commands that
    /// did not fit come back, in order, to lead the next batch.
    fn decide(&self, state: &mut State, submissions: Vec<Submission>) -> (Batch, Vec<Submission>) {
        let now = self
            .options
            .clock
            .now()
            .max(state.head().ts.unwrap_or_else(|| self.options.clock.now()));
        let mut batch = Batch::new(state.head());
        let mut submissions = submissions.into_iter();
        while let Some(submission) = submissions.next() {
            if let Some(over) = batch.add(state, submission, now) {
                return (batch, std::iter::once(over).chain(submissions).collect());
            }
            if batch.bytes >= BATCH_BYTES_TARGET {
                return (batch, submissions.collect());
            }
        }
        (batch, Vec::new())
    }

    /// Answers every command of a durable batch and hands it to the snapshotter.
    fn answer(&mut self, state: &State, batch: Batch) {
        self.since_close_snapshot += batch.records.len() as u64;
        let seq = state.head().seq;
        let Batch {
            records,
            events,
            pending,
            ..
        } = batch;
        for pending in pending {
            let _ = pending.submission.reply.send(
                pending
                    .outcome
                    .map(|answer| Receipt { seq, answer })
                    .map_err(SubmitError::from),
            );
        }
        if let Some(snapshotter) = self.snapshotter {
            snapshotter.offer(Committed { records, events });
        }
    }

    /// Woken between batches: applies what other nodes appended.
    fn follow(&mut self, state: &mut State) {
        if self.stopped.is_none()
            && let Err(why) = self.catch_up(state)
        {
            tracing::warn!(%why, "could not follow the ledger's head; retrying on the next wake-up");
        }
    }

    /// Reads, checks and applies every record the store has beyond `state`'s head (what
    /// other nodes appended), to the write side and then the read side, in seq order. A
    /// record that does not continue the chain stops writes: the store is damaged.
    fn catch_up(&mut self, state: &mut State) -> Result<(), String> {
        if let Some(why) = &self.stopped {
            return Err(why.clone());
        }
        let storage = &*self.shared.storage;
        while state.head().seq < storage.head().seq {
            let from = state.head().seq + 1;
            let records = storage
                .read(from, FOLLOW_RECORDS_PER_READ)
                .map_err(|err| format!("reading the ledger from record {from}: {err}"))?;
            let checked = check_chain(state.head(), &records)
                .and_then(|()| decode_all(&records).map_err(|err| err.to_string()));
            let events = match (records.is_empty(), checked) {
                (false, Ok(events)) => events,
                (true, _) => Err(format!(
                    "record {from} is missing although the store's head is record {}",
                    storage.head().seq
                ))
                .map_err(|why| self.stop(why))?,
                (false, Err(why)) => return Err(self.stop(why)),
            };
            apply_records(state, &records, &events);
            publish(self.shared, &records, &events);
            self.since_close_snapshot += records.len() as u64;
            metrics::counter!("writ_ledger_followed_records_total").increment(records.len() as u64);
            if let Some(snapshotter) = self.snapshotter {
                snapshotter.offer(Committed { records, events });
            }
        }
        Ok(())
    }

    fn stop(&mut self, why: String) -> String {
        let why = format!("the ledger in the store does not continue this node's chain: {why}");
        tracing::error!(%why, "the ledger stops taking writes; run `writ verify --store`");
        self.stopped = Some(why.clone());
        why
    }
}

/// Checks that `records` continue the chain after `head`: gap-free seqs, each `prev_hash`
/// the previous record's hash, and each hash the one its fields give.
fn check_chain(head: Head, records: &[Record]) -> Result<(), String> {
    let mut previous = head;
    for record in records {
        if record.seq != previous.seq + 1 {
            return Err(format!(
                "record {} came where record {} belongs",
                record.seq,
                previous.seq + 1
            ));
        }
        if record.prev_hash != previous.hash {
            return Err(format!(
                "record {}'s prev_hash is not record {}'s hash",
                record.seq, previous.seq
            ));
        }
        let expected = record_hash(
            record.seq,
            &record.prev_hash,
            &record.ts.to_string(),
            &record.event,
        );
        if record.hash != expected {
            return Err(format!(
                "record {}'s hash does not match its bytes",
                record.seq
            ));
        }
        previous = Head {
            seq: record.seq,
            hash: record.hash,
            ts: Some(record.ts),
        };
    }
    Ok(())
}

fn refuse_all(submissions: Vec<Submission>, why: &str) {
    for submission in submissions {
        let _ = submission
            .reply
            .send(Err(SubmitError::Unavailable(why.to_owned())));
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
    publish(shared, &batch.records, &batch.events);
    Ok(())
}

/// Makes durable records visible: the read side, then the Merkle tree.
fn publish(shared: &Shared, records: &[Record], events: &[Event]) {
    apply_records(&mut shared.state.write(), records, events);
    // Leaf hashes outside the lock; inside it only the few node hashes they complete.
    let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(&r.hash)).collect();
    let size = {
        let mut tree = shared.tree.write();
        for (leaf, record) in leaves.into_iter().zip(records) {
            tree.push_leaf(leaf, record.hash);
        }
        tree.size()
    };
    shared.tree_size.send_replace(size);
}

struct Batch {
    head: Head,
    records: Vec<Record>,
    events: Vec<Event>,
    pending: Vec<Pending>,
    bytes: usize,
}

impl Batch {
    /// Its commands, undecided again, in order, followed by `over` (those that came
    /// after them).
    fn into_submissions(self, over: Vec<Submission>) -> Vec<Submission> {
        let mut submissions: Vec<Submission> =
            self.pending.into_iter().map(|p| p.submission).collect();
        submissions.extend(over);
        submissions
    }

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
            submission,
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
