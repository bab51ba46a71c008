//! The snapshotter: a follower of the log with its own copy of the projections, which
//! writes a snapshot every `snapshot_every_records` records. Encoding and syncing a
//! snapshot of a large state takes long enough to stall every writer, so the sequencer
//! never does it while serving: it hands each committed batch over (a move, no copy) and
//! goes on.
//!
//! Architecture Invariant: the snapshotter only reads the log. A batch it could not take
//! (its queue was full) is read back from storage, so what it snapshots is always a
//! prefix of the ledger.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use writ_projections::State;
use writ_schemas::{Event, Record};

use super::sequencer::{apply_records, replay_until, take_snapshot};
use super::storage::Storage;

/// Committed batches waiting for the snapshotter at most; more are dropped and re-read.
const BATCHES_QUEUED_MAX: usize = 64;

/// A batch the sequencer made durable and visible.
pub(super) struct Committed {
    pub(super) records: Vec<Record>,
    pub(super) events: Vec<Event>,
}

/// The running snapshotter.
pub(super) struct Snapshotter {
    batches: SyncSender<Committed>,
    thread: std::thread::JoinHandle<()>,
}

impl Snapshotter {
    /// Starts following from `state` (the projections at the current head).
    pub(super) fn start(
        storage: Arc<dyn Storage>,
        state: State,
        dir: PathBuf,
        every_records: u64,
        kept: Option<usize>,
    ) -> Option<Snapshotter> {
        let (batches, receiver) = sync_channel(BATCHES_QUEUED_MAX);
        let thread = std::thread::Builder::new()
            .name("writ-snapshotter".into())
            .spawn(move || follow(&*storage, state, &dir, (every_records, kept), &receiver))
            .ok()?;
        Some(Snapshotter { batches, thread })
    }

    /// Hands over a committed batch without waiting.
    pub(super) fn offer(&self, committed: Committed) {
        match self.batches.try_send(committed) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("writ_ledger_snapshotter_batches_reread_total").increment(1);
            }
        }
    }

    /// Lets it finish the batches it holds, then stops it.
    pub(super) fn stop(self) {
        drop(self.batches);
        let _ = self.thread.join();
    }
}

fn follow(
    storage: &dyn Storage,
    mut state: State,
    dir: &std::path::Path,
    (every_records, kept): (u64, Option<usize>),
    batches: &Receiver<Committed>,
) {
    let mut since_snapshot = 0u64;
    while let Ok(Committed { records, events }) = batches.recv() {
        let Some(first) = records.first().map(|r| r.seq) else {
            continue;
        };
        let before = state.head().seq;
        // Batches dropped while this thread was busy come back from storage.
        if let Err(why) = replay_until(storage, &mut state, first - 1) {
            tracing::warn!(%why, "the snapshotter cannot read the ledger; no more periodic snapshots");
            return;
        }
        assert_eq!(
            state.head().seq + 1,
            first,
            "the snapshotter must apply records in order"
        );
        apply_records(&mut state, &records, &events);
        since_snapshot += state.head().seq - before;
        if since_snapshot >= every_records {
            since_snapshot = 0;
            take_snapshot(Some(dir), &state, kept);
        }
    }
}
