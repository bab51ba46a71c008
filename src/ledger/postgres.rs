//! The PostgreSQL backend: the ledger's records in one database, so that several writ
//! nodes can share one ledger.
//!
//! ```text
//! records              seq bigint primary key (gap-free from 1), ts (the RFC 3339 text
//!                      that was hashed), prev_hash, hash, event (the canonical bytes that
//!                      were hashed); append-only: a trigger refuses UPDATE, DELETE, TRUNCATE
//! records_head         one row: the seq, hash and ts of the last record
//! writ_schema_version  one row: the schema version, migrated forward on open
//! ```
//!
//! An append is one statement, so one transaction and one commit per sequencer batch: it
//! moves the head row from the head the batch was built on to the batch's last record,
//! inserts the records only if that move happened, and notifies `writ_records`. The head
//! row's lock serializes appenders in the database: a second writer that built on the same
//! head waits for the first to commit, then finds the head moved, inserts nothing and gets
//! [`StorageError::Conflict`]; the primary key stops anything that slips past. Commits happen
//! with `synchronous_commit` on (forced for writ's sessions if the server has it off), so an
//! append returns only once its records are durable.
//!
//! The [`Storage`] trait is synchronous (the sequencer is an OS thread); this backend owns
//! a small tokio runtime of its own and blocks on it, so it works from any thread, inside
//! another runtime too. `head()` never touches the network: it is the newest head this
//! backend knows to be durable (its own appends, and the database's head as of the last
//! notification once someone subscribed). Subscribers are woken by LISTEN/NOTIFY, and then
//! read by seq: a notification is only a wake-up, so a missed one delays, never skips.
//!
//! Tenancy: `?schema=NAME` in the URL puts the ledger in schema NAME (created on first
//! start): a ledger per organisation, each with its own records table, head row and
//! notification channel, so appends for different tenants never wait for each other.
//! Past one database, tenant groups go to databases (or servers) of their own: the URL
//! names where a tenant's ledger is.
//!
//! This module must not decide anything about events: it stores, reads and reports bytes.

use std::future::Future;
use std::sync::{Arc, Once};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls};
use writ_projections::Head;
use writ_schemas::{Hash, Item, Record, RecordRef, Timestamp};

use super::storage::{Storage, StorageError};

/// Connections the backend keeps open at most (the sequencer's appends, readers, the
/// snapshotter), besides the one that listens for notifications.
pub const POOL_CONNECTIONS_MAX: usize = 4;
/// Seconds to wait for a connection to PostgreSQL before calling it unreachable.
pub const CONNECT_SECONDS_MAX: u64 = 10;
/// Seconds one statement may take before the backend gives up on it. An append that times
/// out has an unknown outcome, so the ledger stops taking writes (fail-stop).
pub const STATEMENT_SECONDS_MAX: u64 = 60;
/// Seconds between attempts to listen again after the listening connection was lost.
pub const LISTEN_RETRY_SECONDS: u64 = 1;
/// The schema version this writ writes and reads.
pub const SCHEMA_VERSION: i32 = 1;
/// The channel appends notify, with the new head's seq as the payload; a ledger in a
/// schema of its own (`?schema=NAME`) notifies `writ_records_NAME`, so that nodes of one
/// tenant are not woken by another's appends.
pub const NOTIFY_CHANNEL: &str = "writ_records";

/// The longest schema name `?schema=` takes (PostgreSQL's identifier limit, less the
/// room the notification channel's prefix needs).
pub const SCHEMA_NAME_CHARS_MAX: usize = 48;

/// Key of the advisory lock that serializes schema migrations between nodes starting at once.
const MIGRATION_LOCK_KEY: i64 = 0x7772_6974_5f73_6368;

/// Schema migrations, in order: migration `n` (from 1) takes the schema from version `n - 1`
/// to `n`. Each runs in the one transaction that also records the new version.
const MIGRATIONS: &[&str] = &[r"
CREATE TABLE records (
    seq bigint PRIMARY KEY CHECK (seq >= 1),
    ts text NOT NULL,
    prev_hash bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    event bytea NOT NULL
);
CREATE TABLE records_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint NOT NULL CHECK (seq >= 0),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    ts text
);
INSERT INTO records_head (seq, hash) VALUES (0, decode(repeat('00', 32), 'hex'));
CREATE FUNCTION writ_records_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'writ ledger records are append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION writ_records_are_append_only();
"];

/// Moves the head from ($6, $7) to ($8, $9, $10) and, only if it moved, inserts the batch
/// ($1..$5, one array per column) and notifies. No row back: the head had moved on.
const APPEND: &str = r"
WITH moved AS (
    UPDATE records_head SET seq = $8, hash = $9, ts = $10
    WHERE seq = $6 AND hash = $7
    RETURNING seq
), appended AS (
    INSERT INTO records (seq, ts, prev_hash, hash, event)
    SELECT r.seq, r.ts, r.prev_hash, r.hash, r.event
    FROM moved, unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[], $5::bytea[])
        AS r (seq, ts, prev_hash, hash, event)
    RETURNING 1
)
SELECT (SELECT count(*) FROM appended), pg_notify($11, $8::text) FROM moved";

const READ: &str = "SELECT seq, ts, prev_hash, hash, event FROM records \
                    WHERE seq >= $1 ORDER BY seq LIMIT $2";

const HEAD: &str = "SELECT seq, hash, ts FROM records_head";

/// A record as stored, before any check: what `writ verify` reads, so that a damaged row
/// is reported as the fault it is rather than refused on the way in.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Its seq.
    pub seq: u64,
    /// Its timestamp's text.
    pub ts: String,
    /// Its `prev_hash` bytes.
    pub prev_hash: Vec<u8>,
    /// Its `hash` bytes.
    pub hash: Vec<u8>,
    /// Its event bytes.
    pub event: Vec<u8>,
}

impl StoredRecord {
    /// The record as a verifier's item: a view of it, or why it is not a record.
    pub fn item(&self) -> Item<'_> {
        let hash = |bytes: &[u8], what: &str| {
            <[u8; 32]>::try_from(bytes)
                .map(Hash)
                .map_err(|_| format!("{what} has {} bytes, not 32", bytes.len()))
        };
        Ok(RecordRef {
            seq: self.seq,
            ts: &self.ts,
            prev_hash: hash(&self.prev_hash, "prev_hash")?,
            hash: hash(&self.hash, "hash")?,
            event: &self.event,
        })
    }

    fn into_record(self) -> Result<Record, StorageError> {
        let seq = self.seq;
        let corrupt = |why: String| StorageError::Corrupt(format!("record {seq}: {why}"));
        let (prev_hash, hash) = match self.item() {
            Ok(view) => (view.prev_hash, view.hash),
            Err(why) => return Err(corrupt(why)),
        };
        let ts = Timestamp::parse(&self.ts).map_err(|err| corrupt(err.to_string()))?;
        Ok(Record {
            seq,
            ts,
            prev_hash,
            hash,
            event: self.event,
        })
    }
}

/// The PostgreSQL ledger storage.
pub struct Postgres {
    /// The database, as people should see it (no password).
    target: String,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    config: tokio_postgres::Config,
    pool: Pool,
    head: Arc<Mutex<Head>>,
    head_tx: Arc<watch::Sender<u64>>,
    listening: Once,
    stopped: Mutex<Option<String>>,
}

/// How `open` treats the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Create it or migrate it forward (a node starting, `writ migrate`).
    Migrate,
    /// It must exist at this version; change nothing (`writ verify`, `export`, `replay`).
    Existing,
}

impl Postgres {
    /// Opens the ledger in the database `url` names, creating or migrating its schema.
    pub fn open(url: &str) -> Result<Postgres, StorageError> {
        Postgres::open_with(url, Schema::Migrate)
    }

    /// Opens an existing ledger for reading, changing nothing in the database.
    pub fn open_existing(url: &str) -> Result<Postgres, StorageError> {
        Postgres::open_with(url, Schema::Existing)
    }

    fn open_with(url: &str, schema: Schema) -> Result<Postgres, StorageError> {
        let mut config = parse_url(url)?;
        let target = describe(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("writ-postgres")
            .enable_all()
            .build()
            .map_err(|err| StorageError::io("starting the PostgreSQL client's runtime", err))?;
        let handle = runtime.handle().clone();
        let settings = {
            let (config, target) = (config.clone(), target.clone());
            block_on(&handle, prepare(config, target, schema))?
        };
        if settings.synchronous_commit == "off" {
            // Durable before visible: writ's own sessions commit synchronously whatever the
            // server's default, so an append returns only once its records are on disk.
            tracing::warn!(%target, "PostgreSQL has synchronous_commit off; writ's sessions turn it on");
            let options = config.get_options().unwrap_or_default().to_owned();
            config.options(format!("{options} -c synchronous_commit=on").trim());
        }
        if settings.fsync == "off" {
            tracing::warn!(%target, "PostgreSQL runs with fsync off: a crash of its machine can lose records writ acknowledged");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_CONNECTIONS_MAX)
            .wait_timeout(Some(Duration::from_secs(CONNECT_SECONDS_MAX)))
            .create_timeout(Some(Duration::from_secs(CONNECT_SECONDS_MAX)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|err| StorageError::Database(format!("setting up connections: {err}")))?;
        let head = settings.head;
        let (head_tx, _) = watch::channel(head.seq);
        Ok(Postgres {
            target,
            runtime: Some(runtime),
            handle,
            config,
            pool,
            head: Arc::new(Mutex::new(head)),
            head_tx: Arc::new(head_tx),
            listening: Once::new(),
            stopped: Mutex::new(None),
        })
    }

    /// The database, as people should see it (no password): `postgres://user@host:port/db`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Up to `limit` stored records from `from_seq` on, in seq order, unchecked.
    pub fn read_stored(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let (pool, target) = (self.pool.clone(), self.target.clone());
        let from = i64::try_from(from_seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(async move {
            let client = connection(&pool, &target).await?;
            let statement = client
                .prepare_cached(READ)
                .await
                .map_err(|err| database(&target, "reading records", &err))?;
            let rows = client
                .query(&statement, &[&from, &limit])
                .await
                .map_err(|err| database(&target, "reading records", &err))?;
            rows.iter()
                .map(|row| {
                    Ok(StoredRecord {
                        seq: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
                        ts: row.try_get(1)?,
                        prev_hash: row.try_get(2)?,
                        hash: row.try_get(3)?,
                        event: row.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(|err| database(&target, "reading records", &err))
        })
    }

    /// The database's head as it stands now (not the cached one `head()` gives).
    pub fn head_in_database(&self) -> Result<Head, StorageError> {
        let (pool, target) = (self.pool.clone(), self.target.clone());
        self.run(async move {
            let client = connection(&pool, &target).await?;
            read_head(&client, &target).await
        })
    }

    /// Runs `work` on the backend's runtime and waits for it, from any thread.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StorageError>> + Send + 'static,
    ) -> Result<T, StorageError> {
        block_on(&self.handle, work)
    }

    fn advance(&self, to: Head) {
        advance(&self.head, &self.head_tx, to);
    }

    fn start_listening(&self) {
        self.listening.call_once(|| {
            self.handle.spawn(listen(
                self.config.clone(),
                self.target.clone(),
                Arc::clone(&self.head),
                Arc::clone(&self.head_tx),
            ));
        });
    }

    fn append_now(&self, records: &[Record]) -> Result<(), StorageError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        for pair in records.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1, "a batch is gap-free");
            assert_eq!(pair[1].prev_hash, pair[0].hash, "a batch is chained");
        }
        let to_i64 = |seq: u64| i64::try_from(seq).unwrap_or(i64::MAX);
        let params = AppendParams {
            seqs: records.iter().map(|r| to_i64(r.seq)).collect(),
            ts: records.iter().map(|r| r.ts.to_string()).collect(),
            prev_hashes: records.iter().map(|r| r.prev_hash.0.to_vec()).collect(),
            hashes: records.iter().map(|r| r.hash.0.to_vec()).collect(),
            events: records.iter().map(|r| r.event.clone()).collect(),
            after_seq: to_i64(first.seq - 1),
            after_hash: first.prev_hash.0.to_vec(),
            last_seq: to_i64(last.seq),
            last_hash: last.hash.0.to_vec(),
            last_ts: last.ts.to_string(),
            channel: notify_channel(&self.config),
        };
        let (pool, target) = (self.pool.clone(), self.target.clone());
        let expected_head = first.seq - 1;
        let outcome = self.run(async move {
            let client = connection(&pool, &target).await?;
            let appended = append(&client, &target, &params).await?;
            match appended {
                Some(count) if count == params.seqs.len() as i64 => Ok(None),
                Some(count) => Err(StorageError::Database(format!(
                    "{target}: an append of {} records inserted {count}",
                    params.seqs.len()
                ))),
                None => read_head(&client, &target).await.map(Some),
            }
        })?;
        match outcome {
            None => {
                self.advance(Head {
                    seq: last.seq,
                    hash: last.hash,
                    ts: Some(last.ts),
                });
                Ok(())
            }
            Some(found) => {
                let found_head = found.seq;
                self.advance(found);
                Err(StorageError::Conflict {
                    expected_head,
                    found_head,
                })
            }
        }
    }
}

struct AppendParams {
    seqs: Vec<i64>,
    ts: Vec<String>,
    prev_hashes: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
    events: Vec<Vec<u8>>,
    after_seq: i64,
    after_hash: Vec<u8>,
    last_seq: i64,
    last_hash: Vec<u8>,
    last_ts: String,
    channel: String,
}

/// Runs the append statement: `Some(records inserted)`, or `None` when the head had moved.
async fn append(
    client: &deadpool_postgres::Client,
    target: &str,
    p: &AppendParams,
) -> Result<Option<i64>, StorageError> {
    let statement = client
        .prepare_cached(APPEND)
        .await
        .map_err(|err| unreachable_or_database(target, "preparing an append", &err))?;
    let rows = client
        .query(
            &statement,
            &[
                &p.seqs,
                &p.ts,
                &p.prev_hashes,
                &p.hashes,
                &p.events,
                &p.after_seq,
                &p.after_hash,
                &p.last_seq,
                &p.last_hash,
                &p.last_ts,
                &p.channel,
            ],
        )
        .await;
    match rows {
        Ok(rows) => match rows.first() {
            Some(row) => row
                .try_get::<_, i64>(0)
                .map(Some)
                .map_err(|err| database(target, "appending", &err)),
            None => Ok(None),
        },
        // Two writers on the same head that both got past the head row: the primary key
        // refused the second, whose statement (and so transaction) was rolled back.
        Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(None),
        Err(err) => Err(database(target, "appending", &err)),
    }
}

impl Storage for Postgres {
    fn append(&self, records: &[Record]) -> Result<(), StorageError> {
        if let Some(why) = &*self.stopped.lock() {
            return Err(StorageError::Stopped(why.clone()));
        }
        let appended = self.append_now(records);
        if let Err(err) = &appended
            && !err.nothing_written()
        {
            // Fail-stop: the commit may or may not have happened. Reopening reads the
            // database's head and settles it.
            *self.stopped.lock() = Some(err.to_string());
        }
        appended
    }

    fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<Record>, StorageError> {
        if from_seq == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let stored = self.read_stored(from_seq, limit)?;
        let mut records = Vec::with_capacity(stored.len());
        for row in stored {
            // Appends commit in seq order (the head row serializes them), so a gap is
            // damage; stop before it rather than hand out a record after a hole.
            if row.seq != from_seq + records.len() as u64 {
                break;
            }
            records.push(row.into_record()?);
        }
        Ok(records)
    }

    fn head(&self) -> Head {
        *self.head.lock()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.start_listening();
        self.head_tx.subscribe()
    }

    fn refresh_head(&self) -> Result<Head, StorageError> {
        let head = self.head_in_database()?;
        self.advance(head);
        Ok(self.head())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Not `drop(runtime)`: that would panic if the last handle went away on a thread
        // of another runtime. Pending work has been answered: every call waits for it.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("target", &self.target)
            .field("head", &self.head())
            .finish()
    }
}

/// Moves a cached head forward (never back: a notification may be older than an append).
fn advance(head: &Mutex<Head>, head_tx: &watch::Sender<u64>, to: Head) {
    let mut current = head.lock();
    if to.seq > current.seq {
        *current = to;
        head_tx.send_replace(to.seq);
    }
}

/// Runs `work` on `handle`'s runtime and waits for its answer on this thread.
fn block_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    work: impl Future<Output = Result<T, StorageError>> + Send + 'static,
) -> Result<T, StorageError> {
    let (answer, answered) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let limit = Duration::from_secs(STATEMENT_SECONDS_MAX);
        let outcome = tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(StorageError::Database(format!(
                "PostgreSQL did not answer within {STATEMENT_SECONDS_MAX} seconds"
            )))
        });
        let _ = answer.send(outcome);
    });
    answered.recv().map_err(|_| {
        StorageError::Database("the PostgreSQL client stopped before answering".into())
    })?
}

/// The connection settings `url` names, with its `schema=` (if any) as the session's
/// `search_path`: how every connection writ makes to a ledger's database is configured,
/// the ledger's and the people's key store's alike.
pub(crate) fn parse_url(url: &str) -> Result<tokio_postgres::Config, StorageError> {
    let shape = "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE";
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StorageError::Unreachable(format!(
            "not a PostgreSQL URL: it does not start with postgres:// ({shape})"
        )));
    }
    let (url, schema) = take_schema(url)?;
    let mut config: tokio_postgres::Config = url.parse().map_err(|err| {
        // The error may quote the URL, password and all: say what is wrong without it.
        StorageError::Unreachable(format!("invalid PostgreSQL URL ({err}); {shape}"))
    })?;
    if config.get_hosts().is_empty() {
        return Err(StorageError::Unreachable(format!(
            "the PostgreSQL URL names no host; {shape}"
        )));
    }
    if config.get_user().is_none() {
        return Err(StorageError::Unreachable(format!(
            "the PostgreSQL URL names no user; {shape}"
        )));
    }
    config.connect_timeout(Duration::from_secs(CONNECT_SECONDS_MAX));
    config.application_name("writ");
    if let Some(schema) = schema {
        if config.get_options().is_some() {
            return Err(StorageError::Unreachable(format!(
                "the PostgreSQL URL gives both `schema` and `options`; give the ledger's schema with `schema=` alone ({shape})"
            )));
        }
        config.options(format!("-c search_path={schema}"));
    }
    Ok(config)
}

/// Takes `schema=NAME` out of the URL's query: the ledger of one tenant lives in schema
/// NAME of the database (its own records table and head row, so its appends never wait
/// for another tenant's), created on first start.
fn take_schema(url: &str) -> Result<(String, Option<String>), StorageError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(name) => schema = Some(check_schema(name)?),
            None => rest.push(pair),
        }
    }
    let url = match rest.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", rest.join("&")),
    };
    Ok((url, schema))
}

fn check_schema(name: &str) -> Result<String, StorageError> {
    let plain = name.len() <= SCHEMA_NAME_CHARS_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match plain {
        true => Ok(name.to_owned()),
        false => Err(StorageError::Unreachable(format!(
            "`schema={name}` in the PostgreSQL URL is not a plain schema name: use lowercase letters, digits and underscores, starting with a letter, at most {SCHEMA_NAME_CHARS_MAX} characters"
        ))),
    }
}

/// The schema the URL's `schema=` named, if any.
pub(crate) fn schema_of(config: &tokio_postgres::Config) -> Option<&str> {
    config
        .get_options()?
        .split_whitespace()
        .find_map(|option| option.strip_prefix("search_path="))
}

/// The channel this ledger's appends notify.
fn notify_channel(config: &tokio_postgres::Config) -> String {
    match schema_of(config) {
        Some(schema) => format!("{NOTIFY_CHANNEL}_{schema}"),
        None => NOTIFY_CHANNEL.to_owned(),
    }
}

/// The database `url` names, as people should see it: `postgres://user@host:port/db`,
/// without the password (or "the PostgreSQL URL given" if it does not parse).
pub fn describe_url(url: &str) -> String {
    parse_url(url).map_or_else(|_| "the PostgreSQL URL given".into(), |c| describe(&c))
}

/// `postgres://user@host:port/db`, without the password.
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => String::new(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    match schema_of(config) {
        Some(schema) => format!("postgres://{user}@{host}:{port}/{db}?schema={schema}"),
        None => format!("postgres://{user}@{host}:{port}/{db}"),
    }
}

async fn connection(pool: &Pool, target: &str) -> Result<deadpool_postgres::Client, StorageError> {
    pool.get().await.map_err(|err| {
        StorageError::Unreachable(format!(
            "cannot reach PostgreSQL at {target}: {err}; is it running, and does the URL name the right host, port, user and database?"
        ))
    })
}

fn database(target: &str, doing: &str, err: &tokio_postgres::Error) -> StorageError {
    StorageError::Database(format!("PostgreSQL at {target}, {doing}: {}", explain(err)))
}

/// A failure before anything was sent (preparing a statement) wrote nothing.
fn unreachable_or_database(target: &str, doing: &str, err: &tokio_postgres::Error) -> StorageError {
    StorageError::Unreachable(format!("PostgreSQL at {target}, {doing}: {}", explain(err)))
}

/// The server's own message when there is one (tokio-postgres's display says only "db error").
fn explain(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => err.to_string(),
    }
}

async fn read_head(client: &tokio_postgres::Client, target: &str) -> Result<Head, StorageError> {
    let row = client
        .query_one(HEAD, &[])
        .await
        .map_err(|err| database(target, "reading the head", &err))?;
    let seq: i64 = row
        .try_get(0)
        .map_err(|err| database(target, "reading the head", &err))?;
    let hash: Vec<u8> = row
        .try_get(1)
        .map_err(|err| database(target, "reading the head", &err))?;
    let ts: Option<String> = row
        .try_get(2)
        .map_err(|err| database(target, "reading the head", &err))?;
    let corrupt = |why: &str| StorageError::Corrupt(format!("{target}: records_head {why}"));
    Ok(Head {
        seq: u64::try_from(seq).map_err(|_| corrupt("has a negative seq"))?,
        hash: <[u8; 32]>::try_from(hash.as_slice())
            .map(Hash)
            .map_err(|_| corrupt("has a hash that is not 32 bytes"))?,
        ts: match ts {
            Some(text) => {
                Some(Timestamp::parse(&text).map_err(|_| corrupt("has a malformed timestamp"))?)
            }
            None => None,
        },
    })
}

/// What opening learnt from the database.
struct Settings {
    head: Head,
    synchronous_commit: String,
    fsync: String,
}

/// Connects once: brings the schema to this writ's version (or checks it is there), reads
/// the head and checks it names the last record.
async fn prepare(
    config: tokio_postgres::Config,
    target: String,
    schema: Schema,
) -> Result<Settings, StorageError> {
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|err| connect_error(&config, &target, &err))?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error shows up on the client's next call.
        let _ = connection.await;
    });
    match schema {
        Schema::Migrate => migrate(&mut client, &target, schema_of(&config)).await?,
        Schema::Existing => check_version(&client, &target).await?,
    }
    let head = read_head(&client, &target).await?;
    let last = client
        .query_one(
            "SELECT (SELECT max(seq) FROM records), (SELECT hash FROM records WHERE seq = $1)",
            &[&i64::try_from(head.seq).unwrap_or(i64::MAX)],
        )
        .await
        .map_err(|err| database(&target, "checking the head", &err))?;
    let last_seq: Option<i64> = last.try_get(0).unwrap_or(None);
    let last_hash: Option<Vec<u8>> = last.try_get(1).unwrap_or(None);
    let consistent = u64::try_from(last_seq.unwrap_or(0)).ok() == Some(head.seq)
        && (head.seq == 0 || last_hash.as_deref() == Some(&head.hash.0[..]));
    if !consistent {
        return Err(StorageError::Corrupt(format!(
            "{target}: records_head names record {} but the last record is {}; run `writ verify --store` for details",
            head.seq,
            last_seq.unwrap_or(0)
        )));
    }
    let setting = |name: &'static str| {
        let client = &client;
        let target = &target;
        async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .and_then(|row| row.try_get::<_, String>(0))
                .map_err(|err| database(target, "reading settings", &err))
        }
    };
    Ok(Settings {
        head,
        synchronous_commit: setting("synchronous_commit").await?,
        fsync: setting("fsync").await?,
    })
}

fn connect_error(
    config: &tokio_postgres::Config,
    target: &str,
    err: &tokio_postgres::Error,
) -> StorageError {
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    match err.code() {
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => {
            StorageError::Unreachable(format!(
                "PostgreSQL at {target} has no database `{db}`; create it first (for example `createdb {db}`, or CREATE DATABASE in psql)"
            ))
        }
        Some(_) => StorageError::Unreachable(format!(
            "PostgreSQL at {target} refused the connection: {}",
            explain(err)
        )),
        None => StorageError::Unreachable(format!(
            "cannot connect to PostgreSQL at {target}: {err}; is it running (for example `pg_ctlcluster 15 main start` or `service postgresql start`), and does the URL name the right host and port?"
        )),
    }
}

/// Creates or migrates the schema in one transaction, under an advisory lock so that
/// nodes starting together migrate once.
async fn migrate(
    client: &mut tokio_postgres::Client,
    target: &str,
    schema: Option<&str>,
) -> Result<(), StorageError> {
    let failed = |err: tokio_postgres::Error| database(target, "migrating the schema", &err);
    let transaction = client.transaction().await.map_err(failed)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(failed)?;
    if let Some(schema) = schema {
        // A plain name (checked when the URL was read), so it can stand unquoted.
        transaction
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(failed)?;
    }
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS writ_schema_version (
                 one boolean PRIMARY KEY DEFAULT true CHECK (one),
                 version integer NOT NULL
             );
             INSERT INTO writ_schema_version (version) VALUES (0) ON CONFLICT DO NOTHING;",
        )
        .await
        .map_err(failed)?;
    let version: i32 = transaction
        .query_one("SELECT version FROM writ_schema_version FOR UPDATE", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
    too_new(version, target)?;
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let to = index as i32 + 1;
        if to > version {
            transaction.batch_execute(migration).await.map_err(failed)?;
            tracing::info!(%target, version = to, "migrated the ledger schema");
        }
    }
    transaction
        .execute(
            "UPDATE writ_schema_version SET version = $1",
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(failed)?;
    transaction.commit().await.map_err(failed)
}

async fn check_version(client: &tokio_postgres::Client, target: &str) -> Result<(), StorageError> {
    let failed = |err: tokio_postgres::Error| database(target, "reading the schema version", &err);
    let exists: bool = client
        .query_one("SELECT to_regclass('writ_schema_version') IS NOT NULL", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
    let version: i32 = match exists {
        true => client
            .query_one("SELECT version FROM writ_schema_version", &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(failed)?,
        false => 0,
    };
    too_new(version, target)?;
    if version < SCHEMA_VERSION {
        return Err(StorageError::NotALedger(format!(
            "{target} holds no writ ledger (schema version {version}); `writ serve --store` or `writ migrate` creates one"
        )));
    }
    Ok(())
}

fn too_new(version: i32, target: &str) -> Result<(), StorageError> {
    if version > SCHEMA_VERSION {
        return Err(StorageError::NotALedger(format!(
            "the ledger schema in {target} is version {version}, newer than this writ knows ({SCHEMA_VERSION}); upgrade writ"
        )));
    }
    Ok(())
}

/// Listens for appends (any node's) and moves the cached head; reconnects when the
/// connection drops, and reads the head after every (re)connect, so a notification missed
/// meanwhile costs nothing.
async fn listen(
    config: tokio_postgres::Config,
    target: String,
    head: Arc<Mutex<Head>>,
    head_tx: Arc<watch::Sender<u64>>,
) {
    loop {
        if let Err(why) = listen_once(&config, &target, &head, &head_tx).await {
            tracing::warn!(%target, %why, "lost the connection that listens for appends; reconnecting");
        }
        // Pacing between reconnection attempts, not synchronization.
        tokio::time::sleep(Duration::from_secs(LISTEN_RETRY_SECONDS)).await;
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    target: &str,
    head: &Mutex<Head>,
    head_tx: &watch::Sender<u64>,
) -> Result<(), StorageError> {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .map_err(|err| connect_error(config, target, &err))?;
    let woken = Arc::new(tokio::sync::Notify::new());
    let driver = {
        let woken = Arc::clone(&woken);
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => woken.notify_one(),
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return err.to_string(),
                    None => return "the connection closed".to_owned(),
                }
            }
        })
    };
    let result = async {
        client
            .batch_execute(&format!("LISTEN {}", notify_channel(config)))
            .await
            .map_err(|err| database(target, "listening", &err))?;
        loop {
            // Read the head after listening started: whatever was appended before is in it.
            advance(head, head_tx, read_head(&client, target).await?);
            woken.notified().await;
        }
    };
    tokio::pin!(driver);
    tokio::select! {
        ended = &mut driver => Err(StorageError::Database(ended.unwrap_or_else(|err| err.to_string()))),
        failed = result => failed,
    }
}

/// Creates the database `name` on the server `server_url` names (connecting to the
/// database that URL names). For tools and tests that need a fresh database.
pub fn create_database(server_url: &str, name: &str) -> Result<(), StorageError> {
    administer(server_url, format!("CREATE DATABASE \"{}\"", quoted(name)?))
}

/// Drops the database `name` on the server `server_url` names, closing its connections.
pub fn drop_database(server_url: &str, name: &str) -> Result<(), StorageError> {
    administer(
        server_url,
        format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", quoted(name)?),
    )
}

/// `server_url` with its database replaced by `name`.
pub fn url_for_database(server_url: &str, name: &str) -> String {
    let without_query = server_url.split('?').next().unwrap_or(server_url);
    let after_scheme = without_query.find("://").map_or(0, |at| at + 3);
    let base = match without_query[after_scheme..].find('/') {
        Some(slash) => &without_query[..after_scheme + slash],
        None => without_query,
    };
    format!("{base}/{name}")
}

fn quoted(name: &str) -> Result<&str, StorageError> {
    let plain = !name.is_empty()
        && name.len() < 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match plain {
        true => Ok(name),
        false => Err(StorageError::Database(format!(
            "`{name}` is not a plain database name (letters, digits, underscores)"
        ))),
    }
}

fn administer(server_url: &str, statement: String) -> Result<(), StorageError> {
    let config = parse_url(server_url)?;
    let target = describe(&config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| StorageError::io("starting a runtime", err))?;
    runtime.block_on(async move {
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|err| connect_error(&config, &target, &err))?;
        tokio::spawn(connection);
        client
            .batch_execute(&statement)
            .await
            .map_err(|err| database(&target, &statement, &err))
    })
}

/// A database made for one test or trial, with a unique name, dropped with the value.
#[derive(Debug)]
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

/// The PostgreSQL server tests use: `WRIT_TEST_POSTGRES`, else the local one as
/// `tools/test.sh` sets it up (user postgres, trust authentication).
pub fn test_server_url() -> String {
    std::env::var("WRIT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl ScratchDatabase {
    /// A fresh database on the test server, or what a test that needs one should say
    /// (how to start PostgreSQL).
    pub fn for_test() -> Result<ScratchDatabase, String> {
        let server = test_server_url();
        ScratchDatabase::create(&server).map_err(|err| {
            format!(
                "the PostgreSQL tests need a server at {server} (user postgres, no password; \
                 WRIT_TEST_POSTGRES names another): {err}\n\
                 start it with `pg_ctlcluster 15 main start` or `service postgresql start`, \
                 or run ./tools/test.sh, which starts it"
            )
        })
    }

    /// Creates a fresh database on the server `server_url` names.
    pub fn create(server_url: &str) -> Result<ScratchDatabase, StorageError> {
        let name = format!("writ_scratch_{}", uuid::Uuid::new_v4().simple());
        create_database(server_url, &name)?;
        Ok(ScratchDatabase {
            server_url: server_url.to_owned(),
            url: url_for_database(server_url, &name),
            name,
        })
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Err(err) = drop_database(&self.server_url, &self.name) {
            tracing::warn!(database = %self.name, %err, "could not drop a scratch database");
        }
    }
}
