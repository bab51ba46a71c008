//! The ledger: storage, the sequencer that is its single writer, and the read side.
//!
//! ```text
//! submit(command) --bounded channel--> sequencer thread
//!     batch: decide each command against the write-side state (as left by the commands
//!     before it), seal events into hash-chained records -> one durable append
//!     -> apply to the read-side state -> answer every command of the batch
//! ```
//!
//! Architecture Invariant: a command is answered only after its records are durable, and
//! readers see a record's effects only after that too (durable before visible). Readers
//! take a read lock that the writer holds only while applying a batch, never during I/O.
//! A ledger is a value: several can live in one process (one per tenant), nothing is global.

pub mod datadir;
pub mod embedded;
pub mod frame;
pub mod merkle;
pub mod postgres;
pub mod reader;
mod sequencer;
pub mod snapshots;
mod snapshotter;
pub mod storage;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};
use writ_projections::{Head, State};

use crate::clock::Clock;
use crate::decide::{Answer, Command, Refusal};
use datadir::DataDir;
use embedded::{Embedded, Recovery};
use merkle::MerkleTree;
use storage::{Storage, StorageError};

/// Records between periodic snapshots, by default. A snapshot of a large state costs
/// seconds of a core to encode and write, so this trades background CPU against the
/// records a cold start replays after the newest snapshot (a million: under two seconds
/// on a 2-core machine).
pub const SNAPSHOT_EVERY_RECORDS_DEFAULT: u64 = 1_000_000;

/// Where a ledger's records live.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Store {
    /// In the data directory's segment files (nothing to install).
    #[default]
    Embedded,
    /// In the PostgreSQL database this URL names.
    Postgres(String),
}

impl Store {
    /// Reads `--store`: `embedded`, or a `postgres://` (or `postgresql://`) URL.
    pub fn parse(text: &str) -> Result<Store, String> {
        if text == "embedded" {
            return Ok(Store::Embedded);
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Store::Postgres(text.to_owned()));
        }
        Err(
            "expected `embedded` or a PostgreSQL URL, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
                .into(),
        )
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Embedded => f.write_str("Embedded"),
            // The URL may carry a password.
            Store::Postgres(_) => f.write_str("Postgres(***)"),
        }
    }
}

/// Limits and settings of a ledger.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Commands waiting for the sequencer at most; `submit` refuses more with
    /// `SubmitError::Overloaded` rather than queueing without bound.
    pub channel_commands_max: usize,
    /// Commands decided and appended together at most.
    pub batch_commands_max: usize,
    /// Records between snapshots (0: only at close).
    pub snapshot_every_records: u64,
    /// Write a snapshot when the ledger closes (or is dropped).
    pub snapshot_on_close: bool,
    /// Snapshots kept on disk, newest first (`None`: all). Each kept snapshot bounds the
    /// replay behind a question about the past (`Ledger::state_as_of`) to the records
    /// after it; a question older than the oldest kept snapshot replays from record 1.
    pub snapshots_kept: Option<usize>,
    /// Size at which the embedded backend starts a new segment.
    pub segment_bytes_max: u64,
    /// Where time comes from.
    pub clock: Clock,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            channel_commands_max: 8192,
            batch_commands_max: 1024,
            snapshot_every_records: SNAPSHOT_EVERY_RECORDS_DEFAULT,
            snapshot_on_close: true,
            snapshots_kept: None,
            segment_bytes_max: embedded::SEGMENT_BYTES_MAX_DEFAULT,
            clock: Clock::System,
        }
    }
}

/// Why a submitted command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The command was decided and refused; nothing was written.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The ledger cannot write (storage failure, or it is closing).
    #[error("the ledger is not accepting writes: {0}")]
    Unavailable(String),
    /// `channel_commands_max` commands are already waiting; nothing was written. Retry
    /// shortly.
    #[error("the server is busy: {0} commands are already waiting to be written; retry shortly")]
    Overloaded(usize),
}

/// A command's success: its answer and the ledger position that makes it durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The head after the batch that carried the command.
    pub seq: u64,
    /// What the command tells its caller.
    pub answer: Answer,
}

/// What opening a ledger found and did.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// A torn tail cut off, if any.
    pub recovery: Recovery,
    /// The snapshot loaded (its seq), if any.
    pub snapshot_seq: Option<u64>,
    /// Records replayed on top of it.
    pub replayed: u64,
    /// Snapshots passed over, with why.
    pub skipped_snapshots: Vec<(PathBuf, String)>,
}

/// Decodes records' events (on every core).
pub fn decode_events(
    records: &[writ_schemas::Record],
) -> Result<Vec<writ_schemas::Event>, LedgerError> {
    sequencer::decode_all(records)
}

/// The read models rebuilt as of a past record, and what it took.
#[derive(Debug)]
pub struct Rebuilt {
    /// The state right after the record asked for.
    pub state: State,
    /// The snapshot the replay started from (0: record 1).
    pub snapshot_seq: u64,
    /// Records replayed on top of it.
    pub replayed: u64,
}

/// Errors opening or closing a ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Storage refused.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A record did not decode during replay.
    #[error("record {seq} cannot be replayed: {why}")]
    Replay {
        /// Its seq.
        seq: u64,
        /// Why.
        why: String,
    },
}

pub(crate) struct Submission {
    command: Command,
    reply: oneshot::Sender<Result<Receipt, SubmitError>>,
}

/// What the sequencer is handed.
// The channel held bare submissions of this size before; boxing them to shrink the rare
// wake-up would cost an allocation per command.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Message {
    /// A command to decide and append.
    Command(Submission),
    /// The store's head moved past this node's (another node appended): catch up.
    Follow,
    /// Finish what came before, write the closing snapshot and end (`Ledger::shutdown`).
    Stop,
}

/// Milliseconds between the follower's reads of the store's head when no notification
/// came: the safety net under a lost notification or a listener that is reconnecting.
pub const FOLLOW_POLL_MS_DEFAULT: u64 = 1_000;

struct Shared {
    storage: Arc<dyn Storage>,
    state: RwLock<State>,
    /// The Merkle tree over the durable records; written only by the sequencer.
    tree: RwLock<MerkleTree>,
    /// The tree's size, sent after each batch is in the tree.
    tree_size: tokio::sync::watch::Sender<u64>,
    /// Where snapshots are, for rebuilding the state as of a past record.
    snapshot_dir: Option<PathBuf>,
}

/// An open ledger: submit commands, read projections.
pub struct Ledger {
    shared: Arc<Shared>,
    commands: Option<mpsc::Sender<Message>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The data directory's lock, when the storage does not hold it itself.
    _dir_lock: Option<std::fs::File>,
}

impl Ledger {
    /// Opens (creating if needed) the embedded ledger in `dir`.
    pub fn open_embedded(
        dir: &Path,
        options: LedgerOptions,
    ) -> Result<(Ledger, OpenReport), LedgerError> {
        let data_dir = DataDir::new(dir);
        let (storage, recovery) = Embedded::open(&data_dir, options.segment_bytes_max)?;
        let storage: Arc<dyn Storage> = Arc::new(storage);
        let mut report = OpenReport {
            recovery,
            ..OpenReport::default()
        };
        let state = sequencer::restore(&*storage, Some(&data_dir.snapshots()), &mut report)?;
        let started = std::time::Instant::now();
        let tree = MerkleTree::rebuild(&*storage, state.head().seq)?;
        tracing::debug!(
            records = tree.size(),
            seconds = started.elapsed().as_secs_f64(),
            "Merkle tree rebuilt"
        );
        Ok((
            Ledger::start(storage, state, tree, Some(data_dir.snapshots()), options),
            report,
        ))
    }

    /// Opens (creating its schema if needed) the ledger in the PostgreSQL database `url`
    /// names, with `dir` holding this node's keys and snapshots. The state is the newest
    /// snapshot in `dir` that the database's records confirm, plus a replay of the records
    /// after it.
    pub fn open_postgres(
        url: &str,
        dir: &Path,
        options: LedgerOptions,
    ) -> Result<(Ledger, OpenReport), LedgerError> {
        let data_dir = DataDir::new(dir);
        data_dir.create_or_check_for_store()?;
        let lock = data_dir.lock()?;
        let storage: Arc<dyn Storage> = Arc::new(postgres::Postgres::open(url)?);
        let mut report = OpenReport::default();
        let state = sequencer::restore(&*storage, Some(&data_dir.snapshots()), &mut report)?;
        let tree = MerkleTree::rebuild(&*storage, state.head().seq)?;
        let mut ledger = Ledger::start(storage, state, tree, Some(data_dir.snapshots()), options);
        ledger._dir_lock = Some(lock);
        // Other nodes may append to this ledger: follow them.
        ledger.start_follower(Duration::from_millis(FOLLOW_POLL_MS_DEFAULT));
        Ok((ledger, report))
    }

    /// Opens the ledger `store` names: the embedded one in `dir`, or PostgreSQL's (with
    /// `dir` for keys and snapshots).
    pub fn open(
        store: &Store,
        dir: &Path,
        options: LedgerOptions,
    ) -> Result<(Ledger, OpenReport), LedgerError> {
        match store {
            Store::Embedded => Ledger::open_embedded(dir, options),
            Store::Postgres(url) => Ledger::open_postgres(url, dir, options),
        }
    }

    fn start(
        storage: Arc<dyn Storage>,
        state: State,
        tree: MerkleTree,
        snapshot_dir: Option<PathBuf>,
        options: LedgerOptions,
    ) -> Ledger {
        let (commands, receiver) = mpsc::channel(options.channel_commands_max.max(1));
        assert_eq!(tree.size(), state.head().seq, "the tree covers the ledger");
        let (tree_size, _) = tokio::sync::watch::channel(tree.size());
        let shared = Arc::new(Shared {
            storage,
            state: RwLock::new(state),
            tree: RwLock::new(tree),
            tree_size,
            snapshot_dir: snapshot_dir.clone(),
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("writ-sequencer".into())
            .spawn(move || {
                sequencer::run(&writer_shared, receiver, &options, snapshot_dir.as_deref())
            })
            .ok();
        Ledger {
            shared,
            commands: Some(commands),
            writer: Mutex::new(writer),
            _dir_lock: None,
        }
    }

    /// Submits a command and waits until it is durable (or refused). When the sequencer
    /// already has `channel_commands_max` commands waiting, refuses at once with
    /// `Overloaded`: a bounded queue keeps latency bounded and tells clients to back off.
    pub async fn submit(&self, command: Command) -> Result<Receipt, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let sender = self.sender()?;
        sender
            .try_send(Message::Command(Submission { command, reply }))
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => {
                    metrics::counter!("writ_ledger_commands_overloaded_total").increment(1);
                    SubmitError::Overloaded(sender.max_capacity())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    SubmitError::Unavailable("the sequencer has stopped".into())
                }
            })?;
        answer.await.map_err(|_| {
            SubmitError::Unavailable("the sequencer stopped before answering".into())
        })?
    }

    /// `submit` for callers outside an async runtime (the command line): it waits for room
    /// in the queue instead of refusing.
    pub fn submit_blocking(&self, command: Command) -> Result<Receipt, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.sender()?
            .blocking_send(Message::Command(Submission { command, reply }))
            .map_err(|_| SubmitError::Unavailable("the sequencer has stopped".into()))?;
        answer.blocking_recv().map_err(|_| {
            SubmitError::Unavailable("the sequencer stopped before answering".into())
        })?
    }

    /// Reads the projections as of the last durable batch.
    ///
    /// The closure runs under the read lock the sequencer needs to publish a batch, so it
    /// must do no I/O: copy out what is needed, and open people's data (a key read from a
    /// file or PostgreSQL) after it returns. [`People`](crate::people::People) checks
    /// this with [`assert_not_reading`] in debug builds, so a test that reaches such a
    /// call fails.
    pub fn read<T>(&self, query: impl FnOnce(&State) -> T) -> T {
        let _reading = Reading::enter();
        query(&self.shared.state.read())
    }

    /// The read models as they stood right after record `seq` (1 up to the head the read
    /// side has applied), rebuilt apart from the live ones: from the newest snapshot at or
    /// before `seq` whose hash the ledger confirms, plus the records after it up to `seq`.
    /// So the replay is at most the records between two snapshots (one
    /// `snapshot_every_records` interval) when every snapshot is kept, and never touches
    /// the live state. Blocking (I/O and a fold): call it off the async workers.
    pub fn state_as_of(&self, seq: u64) -> Result<Rebuilt, LedgerError> {
        let applied = self.shared.state.read().head().seq;
        if seq == 0 || seq > applied {
            return Err(LedgerError::Replay {
                seq,
                why: format!("not a record of this ledger, which ends at record {applied}"),
            });
        }
        let storage = &*self.shared.storage;
        let mut state = self
            .shared
            .snapshot_dir
            .as_deref()
            .and_then(|dir| {
                snapshots::load_newest(dir, storage, seq, |path, why| {
                    tracing::warn!(snapshot = %path.display(), %why, "ignoring snapshot");
                })
            })
            .unwrap_or_default();
        let snapshot_seq = state.head().seq;
        let replayed = sequencer::replay_until(storage, &mut state, seq)?;
        Ok(Rebuilt {
            state,
            snapshot_seq,
            replayed,
        })
    }

    /// Commands waiting for the sequencer now.
    pub fn commands_queued(&self) -> usize {
        self.commands
            .as_ref()
            .map_or(0, |sender| sender.max_capacity() - sender.capacity())
    }

    /// The last durable record.
    pub fn head(&self) -> Head {
        self.shared.storage.head()
    }

    /// Reads the Merkle tree over the durable records (a read lock the sequencer takes
    /// for writing only while adding a finished batch).
    pub fn merkle<T>(&self, query: impl FnOnce(&MerkleTree) -> T) -> T {
        query(&self.shared.tree.read())
    }

    /// Watches the Merkle tree's size: it changes after a batch is durable and in the tree.
    pub fn subscribe_tree(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.tree_size.subscribe()
    }

    /// The storage backend (for reading records and subscribing to the head).
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }

    /// How many records the read models are behind the store's head (what other nodes
    /// appended that this node has not applied yet, or a batch in flight).
    pub fn lag(&self) -> u64 {
        let visible = self.shared.state.read().head().seq;
        self.head().seq.saturating_sub(visible)
    }

    /// Starts the thread that wakes the sequencer when the store's head moves past what
    /// this node applied (a notification), and asks the store for its head every
    /// `poll` when none came. It ends when the ledger closes.
    fn start_follower(&self, poll: Duration) {
        let Some(commands) = self.commands.as_ref().map(mpsc::Sender::downgrade) else {
            return;
        };
        let shared = Arc::downgrade(&self.shared);
        let heads = self.shared.storage.subscribe();
        let started = std::thread::Builder::new()
            .name("writ-follower".into())
            .spawn(move || follow(&shared, heads, &commands, poll));
        if let Err(err) = started {
            tracing::error!(%err, "could not start following the ledger; this node sees other nodes' records only when it appends");
        }
    }

    fn sender(&self) -> Result<&mpsc::Sender<Message>, SubmitError> {
        self.commands
            .as_ref()
            .ok_or_else(|| SubmitError::Unavailable("the ledger is closed".into()))
    }

    /// Stops taking commands, lets the sequencer finish what it has, and writes a
    /// snapshot. Dropping the ledger does the same.
    pub fn close(self) {
        drop(self);
    }

    /// Stops the sequencer and waits for it: commands submitted before this are decided
    /// and appended, the closing snapshot is written, later submissions are refused. Unlike
    /// dropping, it works while other handles (an HTTP worker still winding down) hold
    /// this ledger, so a process can call it and then exit knowing its writer is done.
    /// Call it outside an async runtime: it blocks.
    pub fn shutdown(&self) {
        if let Some(sender) = &self.commands {
            // Fails only when the sequencer has ended already.
            let _ = sender.blocking_send(Message::Stop);
        }
        if let Some(handle) = self.writer.lock().take() {
            // As in `drop`: a panicked sequencer has stopped writes already.
            let _ = handle.join();
        }
    }
}

/// The follower thread: waits for the store's head to move (or `poll` to pass, then
/// asks the store), and hands the sequencer a wake-up when this node is behind. Only a
/// wake-up: the sequencer reads by seq, so a lost or merged wake-up delays, never skips.
fn follow(
    shared: &Weak<Shared>,
    mut heads: tokio::sync::watch::Receiver<u64>,
    commands: &mpsc::WeakSender<Message>,
    poll: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "could not start following the ledger");
            return;
        }
    };
    loop {
        let woken = runtime.block_on(async { tokio::time::timeout(poll, heads.changed()).await });
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match woken {
            // The store is gone: the ledger closed.
            Ok(Err(_)) => return,
            Ok(Ok(())) => {}
            Err(_) => {
                if let Err(err) = shared.storage.refresh_head() {
                    tracing::warn!(%err, "could not read the store's head");
                }
            }
        }
        let behind = shared.storage.head().seq > shared.state.read().head().seq;
        drop(shared);
        if behind {
            let Some(sender) = commands.upgrade() else {
                return;
            };
            // A full queue means the sequencer is busy; it catches up before its next batch.
            let _ = sender.try_send(Message::Follow);
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        drop(self.commands.take());
        if let Some(handle) = self.writer.lock().take() {
            // The sequencer ends by returning once the channel closes. If it panicked,
            // writes have stopped already (fail-stop); the panic was reported there.
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("head", &self.head())
            .finish()
    }
}

thread_local! {
    /// How many [`Ledger::read`] closures this thread is inside (nested reads count).
    static READING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Marks a thread as inside a [`Ledger::read`] closure while alive, unwinding included.
struct Reading;

impl Reading {
    fn enter() -> Reading {
        READING.with(|reading| reading.set(reading.get().saturating_add(1)));
        Reading
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        READING.with(|reading| reading.set(reading.get().saturating_sub(1)));
    }
}

/// Whether this thread is inside a [`Ledger::read`] closure.
pub fn reading() -> bool {
    READING.with(|reading| reading.get() > 0)
}

/// Stops a debug build (every test) when `doing` is asked inside a [`Ledger::read`]
/// closure: `doing` may wait on I/O, and every batch waits for the read lock to publish.
/// Release builds only count it, in the log.
#[track_caller]
pub fn assert_not_reading(doing: &str) {
    let inside = reading();
    if inside {
        tracing::error!(
            doing,
            "I/O inside Ledger::read: copy out under the lock, then do it"
        );
    }
    debug_assert!(
        !inside,
        "{doing} inside Ledger::read: copy what is needed out of the closure and do it after"
    );
}

#[cfg(test)]
mod tests;
