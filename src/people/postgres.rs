//! People's keys in PostgreSQL, for several nodes over one database: one row per person in
//! `writ_person_keys`, beside the ledger's tables but never in `records`, so that deleting
//! a row erases a person and leaves the ledger as it was. A tenant's ledger
//! (`?schema=NAME`) has its own table, `NAME.writ_person_keys`, named with its schema in
//! every statement: tenants on one database never read or delete each other's keys.
//!
//! Deleting a row leaves its bytes in the table's dead tuples and the write-ahead log
//! until PostgreSQL recycles them; `destroy` runs `VACUUM` on the table afterwards so the
//! dead row does not linger there, and README "Erasure" says what an operator does about
//! WAL archives and backups.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use writ_schemas::UserId;

use super::{PersonKey, PersonKeyStore};
use crate::ledger::storage::StorageError;

/// Connections the key store keeps.
const POOL_CONNECTIONS_MAX: usize = 2;
/// Longest wait for a connection or a statement, in seconds.
const STATEMENT_SECONDS_MAX: u64 = 30;

/// The key table's name without a schema.
const TABLE: &str = "writ_person_keys";

/// The statements of one key table, named with its schema.
#[derive(Debug)]
struct Statements {
    /// The table, `NAME.writ_person_keys` for a tenant's ledger (`?schema=NAME`).
    table: String,
    create: String,
    get: String,
    put_new: String,
    destroy: String,
    vacuum: String,
}

impl Statements {
    /// The statements of the table beside the ledger: in the tenant's schema when the URL
    /// names one, so tenants on one database never share keys; else unqualified, where
    /// the ledger's own tables are (the database's default schema).
    fn of(schema: Option<&str>) -> Statements {
        let table = match schema {
            Some(schema) => format!("{schema}.{TABLE}"),
            None => TABLE.to_owned(),
        };
        let create_schema = match schema {
            Some(schema) => format!("CREATE SCHEMA IF NOT EXISTS {schema};\n"),
            None => String::new(),
        };
        Statements {
            create: format!(
                "{create_schema}CREATE TABLE IF NOT EXISTS {table} (
    user_id text PRIMARY KEY,
    key bytea NOT NULL CHECK (length(key) = 32)
)"
            ),
            get: format!("SELECT key FROM {table} WHERE user_id = $1"),
            put_new: format!(
                "WITH put AS (
    INSERT INTO {table} (user_id, key) VALUES ($1, $2)
    ON CONFLICT (user_id) DO NOTHING RETURNING key
)
SELECT key FROM put UNION ALL SELECT key FROM {table} WHERE user_id = $1"
            ),
            destroy: format!("DELETE FROM {table} WHERE user_id = $1"),
            vacuum: format!("VACUUM {table}"),
            table,
        }
    }
}

/// People's keys in the PostgreSQL database a URL names.
pub struct PostgresKeys {
    target: String,
    // Kept so the runtime lives as long as the store; dropped without waiting.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: Pool,
    statements: Arc<Statements>,
}

impl std::fmt::Debug for PostgresKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PostgresKeys({}, {})",
            self.target, self.statements.table
        )
    }
}

impl Drop for PostgresKeys {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl PostgresKeys {
    /// Opens the store in the database `url` names, creating its table if missing: in
    /// schema NAME for a URL with `?schema=NAME` (the tenant's, beside its ledger). The
    /// URL is read as the ledger reads it, so any URL the ledger opens, this opens.
    pub fn open(url: &str) -> Result<PostgresKeys, StorageError> {
        let config = crate::ledger::postgres::parse_url(url).map_err(|err| match err {
            StorageError::Unreachable(why) => {
                StorageError::Unreachable(format!("people's keys: {why}"))
            }
            other => other,
        })?;
        let statements = Arc::new(Statements::of(crate::ledger::postgres::schema_of(&config)));
        let target = crate::ledger::postgres::describe_url(url);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("writ-person-keys")
            .enable_all()
            .build()
            .map_err(|err| StorageError::io("starting the key store's runtime", err))?;
        let handle = runtime.handle().clone();
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_CONNECTIONS_MAX)
            .wait_timeout(Some(Duration::from_secs(STATEMENT_SECONDS_MAX)))
            .create_timeout(Some(Duration::from_secs(STATEMENT_SECONDS_MAX)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|err| StorageError::Database(format!("setting up connections: {err}")))?;
        let store = PostgresKeys {
            target,
            runtime: Some(runtime),
            handle,
            pool,
            statements,
        };
        let statements = Arc::clone(&store.statements);
        store.run("creating writ_person_keys", |client| async move {
            client.batch_execute(&statements.create).await.map(|_| ())
        })?;
        Ok(store)
    }

    /// Runs `work` with a connection on the store's runtime and waits for it, from any
    /// thread (an actix worker's included, where `block_on` would panic).
    fn run<T, F, W>(&self, doing: &'static str, work: W) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
        W: FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
    {
        let (pool, target) = (self.pool.clone(), self.target.clone());
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let attempt = async {
                let client = pool.get().await.map_err(|err| {
                    StorageError::Unreachable(format!("PostgreSQL at {target}, {doing}: {err}"))
                })?;
                work(client).await.map_err(|err| {
                    StorageError::Database(format!("PostgreSQL at {target}, {doing}: {err}"))
                })
            };
            let limit = Duration::from_secs(STATEMENT_SECONDS_MAX);
            let outcome = tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(StorageError::Database(format!(
                        "PostgreSQL at {target}, {doing}: no answer within {STATEMENT_SECONDS_MAX} seconds"
                    )))
                });
            let _ = answer.send(outcome);
        });
        answered.recv().map_err(|_| {
            StorageError::Database("the key store's client stopped before answering".into())
        })?
    }
}

fn key_of(bytes: &[u8]) -> Result<PersonKey, StorageError> {
    let key: [u8; 32] = bytes.try_into().map_err(|_| {
        StorageError::Corrupt("a person's key in writ_person_keys is not 32 bytes".into())
    })?;
    Ok(PersonKey::from_bytes(key))
}

impl PersonKeyStore for PostgresKeys {
    fn get(&self, user_id: &UserId) -> Result<Option<PersonKey>, StorageError> {
        let id = user_id.as_str().to_owned();
        let statements = Arc::clone(&self.statements);
        let row = self.run("reading a person's key", |client| async move {
            let row = client.query_opt(&statements.get, &[&id]).await?;
            row.map(|row| row.try_get::<_, Vec<u8>>(0)).transpose()
        })?;
        row.map(|bytes| key_of(&zeroize::Zeroizing::new(bytes)))
            .transpose()
    }

    fn put_new(&self, user_id: &UserId, key: PersonKey) -> Result<PersonKey, StorageError> {
        let id = user_id.as_str().to_owned();
        let bytes = zeroize::Zeroizing::new(key.bytes().to_vec());
        let statements = Arc::clone(&self.statements);
        let stored = self.run("storing a person's key", move |client| async move {
            let row = client
                .query_one(&statements.put_new, &[&id, &*bytes])
                .await?;
            row.try_get::<_, Vec<u8>>(0)
        })?;
        key_of(&zeroize::Zeroizing::new(stored))
    }

    fn destroy(&self, user_id: &UserId) -> Result<bool, StorageError> {
        let id = user_id.as_str().to_owned();
        let statements = Arc::clone(&self.statements);
        let deleted = self.run("deleting a person's key", |client| async move {
            client.execute(&statements.destroy, &[&id]).await
        })?;
        let statements = Arc::clone(&self.statements);
        if deleted > 0
            && let Err(err) = self.run("vacuuming writ_person_keys", |client| async move {
                client.batch_execute(&statements.vacuum).await
            })
        {
            // The row is deleted (committed); the vacuum only hastens its bytes' reuse.
            tracing::warn!(%err, "could not vacuum writ_person_keys after an erasure");
        }
        Ok(deleted > 0)
    }
}
