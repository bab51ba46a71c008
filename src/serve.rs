//! `writ serve`: open the ledger, serve HTTP until SIGINT or SIGTERM, then stop taking
//! requests, let the sequencer finish every accepted command, snapshot, and exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};

use writ_schemas::{Actor, AdminRole, SigningAlgorithm, Timestamp};

use crate::checkpoints::Checkpoints;
use crate::decide::{Command, Refusal};
use crate::http::{AppState, routes};
use crate::keys::{CurrentKey, SigningKeys, Startup};
use crate::ledger::datadir::DataDir;
use crate::ledger::{Ledger, LedgerOptions, Store, SubmitError};
use crate::people::{FileKeys, People, PersonKeyStore, PostgresKeys};
use crate::secrets::{SecretHasher, new_id, new_secret};

/// `writ serve` settings. Every flag also reads `WRIT_<NAME>`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The data directory, created on first start (embedded storage: nothing to install).
    /// With `--store postgres://...` it holds this node's keys and snapshots only.
    #[arg(long, env = "WRIT_DATA_DIR", default_value = "./writ-data")]
    pub data_dir: PathBuf,
    /// Where the keys are (the secret-hashing key, signing keys, the checkpoint key;
    /// owner-only): default `<data-dir>/keys`. Every node of one ledger needs the same
    /// keys: point them at one directory, or give each a copy of the first node's.
    #[arg(long, env = "WRIT_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Where the ledger's records live: `embedded` (segment files in the data directory),
    /// or a PostgreSQL database, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, for
    /// several writ nodes over one ledger. The database must exist; writ creates and
    /// migrates its own tables in it. A ledger is moved there with `writ migrate`.
    #[arg(long, env = "WRIT_STORE", default_value = "embedded", value_parser = Store::parse, hide_env_values = true)]
    pub store: Store,
    /// Address and port to listen on; port 0 takes a free one (the chosen port is printed).
    #[arg(long, env = "WRIT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The issuer URL written into tokens and metadata (default: http://<listen>).
    #[arg(long, env = "WRIT_ISSUER")]
    pub issuer: Option<String>,
    /// On the first start of a data directory, use this as the initial admin token (stored
    /// hashed, not printed) instead of generating one. At least 32 characters.
    #[arg(long, env = "WRIT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The algorithm tokens are signed with: EdDSA (Ed25519), ES256 (P-256) or RS256
    /// (RSA 2048). Unset: the current key's algorithm (EdDSA on the first start). When it
    /// differs from the current key's, starting rotates to a new key of this algorithm:
    /// the rotation is recorded in the ledger, the previous key stays in the JWKS for 24
    /// hours so tokens it signed still verify, and the banner says so.
    #[arg(long, env = "WRIT_SIGNING_ALG", value_parser = crate::keys::parse_algorithm)]
    pub signing_alg: Option<SigningAlgorithm>,
    /// Shift the server's clock by this many seconds (tests only; hidden).
    #[arg(long, hide = true, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_offset_seconds: i64,
    /// Token requests per minute one agent may make, unless its policy
    /// (`token_requests_per_minute`) says otherwise; beyond it, 429 with Retry-After.
    #[arg(long, env = "WRIT_TOKEN_REQUESTS_PER_MINUTE", default_value_t = crate::http::limits::TOKEN_REQUESTS_PER_MINUTE_DEFAULT, value_parser = clap::value_parser!(u32).range(1..))]
    pub token_requests_per_minute: u32,
    /// Commands (writes) waiting for the ledger at most; beyond it, 503 with Retry-After
    /// instead of an unbounded queue.
    #[arg(long, env = "WRIT_COMMANDS_QUEUED_MAX", default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub commands_queued_max: u32,
    /// Records between periodic snapshots (written by a background thread; 0: only at
    /// shutdown). Fewer means less background work, more to replay after a crash.
    #[arg(long, env = "WRIT_SNAPSHOT_EVERY_RECORDS", default_value_t = crate::ledger::SNAPSHOT_EVERY_RECORDS_DEFAULT)]
    pub snapshot_every_records: u64,
    /// Snapshots kept on disk, newest first (default: all). Every snapshot is also where
    /// an audit question about the past starts its replay, so keeping them all bounds that
    /// replay to one `--snapshot-every-records` interval; a question older than the oldest
    /// kept snapshot replays from record 1. Each costs the read models' size on disk.
    #[arg(long, env = "WRIT_SNAPSHOTS_KEPT", value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshots_kept: Option<u64>,
    /// An identity provider whose JWTs token exchange accepts as a person's
    /// `subject_token`, as ISSUER_URL=JWKS_URL_OR_FILE (repeatable; in
    /// WRIT_TRUSTED_ISSUERS, comma-separated). Its `iss` must be ISSUER_URL exactly; its
    /// `email` claim names the writ user; its `aud`, if any, must name writ's issuer URL.
    /// A JWKS file is read at start; a URL is fetched on first use and hourly, or early
    /// for an unknown `kid` (at most once a minute).
    #[arg(long = "trusted-issuer", env = "WRIT_TRUSTED_ISSUERS", value_delimiter = ',', value_parser = crate::issuers::parse_trusted_issuer)]
    pub trusted_issuers: Vec<crate::issuers::TrustedIssuer>,
    /// Sign a checkpoint (the Merkle root at the durable head, as a C2SP signed note,
    /// served by GET /api/v1/ledger/head) once this many records were added since the
    /// last one.
    #[arg(long, env = "WRIT_CHECKPOINT_EVERY_RECORDS", default_value_t = crate::checkpoints::CHECKPOINT_EVERY_RECORDS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every_records: u64,
    /// Sign a checkpoint once this many milliseconds passed since the last one and any
    /// record was added (an idle ledger signs nothing new).
    #[arg(long, env = "WRIT_CHECKPOINT_EVERY_MS", default_value_t = crate::checkpoints::CHECKPOINT_EVERY_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every_ms: u64,
    /// The checkpoints' origin line and key name (default: --issuer's host and path;
    /// without --issuer, the name the ledger first published, or the listen address).
    /// No spaces or '+'. Changing it publishes the checkpoint key again under the new
    /// name.
    #[arg(long, env = "WRIT_CHECKPOINT_ORIGIN")]
    pub checkpoint_origin: Option<String>,
    /// The key-encryption keys that wrap upstream secrets (servers' client secrets,
    /// people's upstream tokens): a file of `ID BASE64URL-KEY` lines, the last one current
    /// (default `<keys-dir>/kek.keys`, made with one random key on first start).
    #[arg(long, env = "WRIT_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// A key-encryption key as `ID:BASE64URL-KEY` (32 bytes), current when set; keys in
    /// the key file still unwrap what they wrapped.
    #[arg(long, env = "WRIT_KEK", hide_env_values = true)]
    pub kek: Option<String>,
    /// Refresh people's upstream connections whose access token expires within this many
    /// seconds (the background refresh; a call that finds one expired refreshes it too).
    #[arg(long, env = "WRIT_CONNECTION_REFRESH_WINDOW_SECONDS", default_value_t = crate::connections::REFRESH_WINDOW_SECONDS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub connection_refresh_window_seconds: u64,
    /// Look for upstream connections to refresh this often, in seconds.
    #[arg(long, env = "WRIT_CONNECTION_REFRESH_EVERY_SECONDS", default_value_t = crate::connections::REFRESH_EVERY_SECONDS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub connection_refresh_every_seconds: u64,
    /// Seconds before a failed revocation of an ended connection's upstream token is tried
    /// again; each further wait doubles (one wait at most a day), for 8 attempts in all.
    #[arg(long, env = "WRIT_UPSTREAM_REVOCATION_RETRY_SECONDS_MIN", default_value_t = crate::connections::REVOCATION_RETRY_SECONDS_MIN_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub upstream_revocation_retry_seconds_min: u64,
    /// Milliseconds a forwarded tool call may take, connecting to the last byte of its answer.
    #[arg(long, env = "WRIT_MCP_TIMEOUT_MS", default_value_t = 30_000)]
    pub mcp_timeout_ms: u64,
    /// Milliseconds a forwarded tool call may take to connect to its MCP server (within
    /// --mcp-timeout-ms).
    #[arg(long, env = "WRIT_MCP_CONNECT_TIMEOUT_MS", default_value_t = crate::mcp::CONNECT_TIMEOUT_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub mcp_connect_timeout_ms: u64,
    /// The largest answer accepted from an MCP server, in bytes.
    #[arg(long, env = "WRIT_MCP_RESPONSE_BYTES_MAX", default_value_t = 4 * 1024 * 1024)]
    pub mcp_response_bytes_max: usize,
    /// Seconds an approval of a supervised agent's critical tool call stays open, from
    /// when the call asks for it to when the approved retry must be made.
    #[arg(long, env = "WRIT_APPROVAL_TTL_SECONDS", default_value_t = crate::http::gateway::APPROVAL_TTL_SECONDS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub approval_ttl_seconds: u64,
    /// Who may register clients at POST /oauth/register (RFC 7591): `token` (the holder
    /// of an initial access token: an admin token, or --registration-token), `open`
    /// (anyone; each client lands in the agent inventory needing review), or `off`.
    #[arg(long, env = "WRIT_REGISTRATION", default_value = "token", value_parser = crate::http::registration::RegistrationMode::parse)]
    pub registration: crate::http::registration::RegistrationMode,
    /// An initial access token for `--registration token` besides the admin tokens, to
    /// hand to developers who may register clients and do nothing else (stored hashed in
    /// memory, never in the ledger). At least 32 characters.
    #[arg(long, env = "WRIT_REGISTRATION_TOKEN", hide_env_values = true)]
    pub registration_token: Option<String>,
    /// Client registrations the whole server accepts per minute; beyond it, 429 with
    /// Retry-After.
    #[arg(long, env = "WRIT_REGISTRATIONS_PER_MINUTE", default_value_t = crate::http::registration::REGISTRATIONS_PER_MINUTE_DEFAULT, value_parser = clap::value_parser!(u32).range(1..))]
    pub registrations_per_minute: u32,
    /// Accept client metadata documents (a client_id that is a URL) served over http on
    /// loopback, and fetch them from loopback addresses: for development and tests only.
    /// Without it, documents come over https from public addresses only.
    #[arg(long, env = "WRIT_CLIENT_METADATA_LOOPBACK")]
    pub client_metadata_loopback: bool,
    /// Seconds to let in-flight requests finish after a shutdown signal.
    #[arg(long, env = "WRIT_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Milliseconds from a connection's first byte to the end of its request's headers;
    /// a slower client gets 408 and its connection is closed.
    #[arg(long, env = "WRIT_REQUEST_HEAD_TIMEOUT_MS", default_value_t = crate::listener::REQUEST_HEAD_TIMEOUT_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_head_timeout_ms: u64,
    /// Milliseconds from the end of a request's headers to the end of its body (a body
    /// trickled in, or promised by Content-Length and not sent, included); a slower client
    /// gets 408 and its connection is closed.
    #[arg(long, env = "WRIT_REQUEST_BODY_TIMEOUT_MS", default_value_t = crate::http::read_deadline::REQUEST_BODY_TIMEOUT_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_body_timeout_ms: u64,
    /// Milliseconds a kept-alive connection may wait for its next request before it is
    /// closed.
    #[arg(long, env = "WRIT_CONNECTION_IDLE_TIMEOUT_MS", default_value_t = crate::listener::CONNECTION_IDLE_TIMEOUT_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub connection_idle_timeout_ms: u64,
    /// Milliseconds a connection being closed may take to take the rest of its answer and
    /// shut down before it is dropped.
    #[arg(long, env = "WRIT_CLIENT_DISCONNECT_TIMEOUT_MS", default_value_t = crate::listener::CLIENT_DISCONNECT_TIMEOUT_MS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub client_disconnect_timeout_ms: u64,
    /// Connections open at once, at most, over all workers; beyond it new connections wait
    /// in the listen backlog until one closes. Default: half of the open-file limit left
    /// after 256 descriptors for the ledger's files and database connections (each
    /// connection may hold one outbound call), at most 16384.
    #[arg(long, env = "WRIT_CONNECTIONS_MAX", value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub connections_max: Option<u64>,
    /// Connections the kernel queues for the server to accept (while every worker is at
    /// its share of --connections-max, or busy); beyond it, new ones are refused.
    #[arg(long, env = "WRIT_LISTEN_BACKLOG_MAX", default_value_t = crate::listener::LISTEN_BACKLOG_MAX_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub listen_backlog_max: u32,
    /// Memory, in MiB, that all argon2 password hashes and verifications running at once
    /// may take (each takes 19 MiB: the default lets 13 run). A sign-in or password change
    /// that finds no room within --password-hash-wait-ms-max is answered 503 with
    /// Retry-After.
    #[arg(long, env = "WRIT_PASSWORD_HASH_MEMORY_MIB_MAX", default_value_t = crate::http::throttle::PASSWORD_HASH_MEMORY_MIB_MAX_DEFAULT, value_parser = clap::value_parser!(u32).range(19..=1_048_576))]
    pub password_hash_memory_mib_max: u32,
    /// Milliseconds a password hash waits for room in the hashing memory budget.
    #[arg(long, env = "WRIT_PASSWORD_HASH_WAIT_MS_MAX", default_value_t = crate::http::throttle::PASSWORD_HASH_WAIT_MS_MAX_DEFAULT, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub password_hash_wait_ms_max: u64,
    /// Failed sign-ins to one account before its sign-ins are delayed (429 with
    /// Retry-After, no password checked); the threshold also records a
    /// SignInFailuresDetected anomaly on the person.
    #[arg(long, env = "WRIT_SIGN_IN_FAILURES_FREE", default_value_t = crate::http::throttle::SIGN_IN_FAILURES_FREE_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub sign_in_failures_free: u32,
    /// Failed sign-ins from one client address, over all accounts, before its sign-ins
    /// are delayed.
    #[arg(long, env = "WRIT_SIGN_IN_ADDRESS_FAILURES_FREE", default_value_t = crate::http::throttle::SIGN_IN_ADDRESS_FAILURES_FREE_DEFAULT, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sign_in_address_failures_free: u32,
    /// The first sign-in delay, in seconds; it doubles with each further failure.
    #[arg(long, env = "WRIT_SIGN_IN_DELAY_SECONDS_FIRST", default_value_t = crate::http::throttle::SIGN_IN_DELAY_SECONDS_FIRST_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub sign_in_delay_seconds_first: u64,
    /// The longest sign-in delay, in seconds (failures are forgotten after twice this
    /// without one).
    #[arg(long, env = "WRIT_SIGN_IN_DELAY_SECONDS_MAX", default_value_t = crate::http::throttle::SIGN_IN_DELAY_SECONDS_MAX_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub sign_in_delay_seconds_max: u64,
    /// Entries each sign-in throttle table (accounts, addresses, account and address
    /// pairs) holds at most; a full table drops the oldest.
    #[arg(long, env = "WRIT_SIGN_IN_THROTTLE_ENTRIES_MAX", default_value_t = crate::http::throttle::SIGN_IN_THROTTLE_ENTRIES_MAX_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub sign_in_throttle_entries_max: u64,
    /// Count sign-ins under the last address of X-Forwarded-For instead of the peer's:
    /// only behind a proxy that sets it (anyone else could name any address).
    #[arg(long, env = "WRIT_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The ledger did not open.
    #[error("cannot open the ledger in {dir}: {source}")]
    Ledger {
        /// The data directory.
        dir: String,
        /// Why.
        source: crate::ledger::LedgerError,
    },
    /// The data directory's keys could not be read or made.
    #[error("{0}")]
    Keys(crate::ledger::storage::StorageError),
    /// The signing key could not be made or loaded.
    #[error("{0}")]
    SigningKey(#[from] crate::keys::KeyError),
    /// The trusted issuers could not be set up.
    #[error("{0}")]
    TrustedIssuers(#[from] crate::issuers::IssuersError),
    /// The key-encryption keys could not be loaded.
    #[error("{0}")]
    Kek(#[from] crate::kek::KekError),
    /// The initial admin token could not be set up.
    #[error("{0}")]
    AdminToken(String),
    /// Starting failed after the first start recorded a generated admin token: the error
    /// shows the token, which no later start can show again.
    #[error("{source}\n  the admin token this first start recorded (shown once, keep it): {token}")]
    AfterFirstAdmin {
        /// The generated admin token, recorded (hashed) in the ledger.
        token: String,
        /// Why starting failed.
        source: Box<ServeError>,
    },
    /// The tool-call gateway's options are not usable.
    #[error("{0}")]
    Gateway(String),
    /// An HTTP client for outbound calls could not be made.
    #[error("cannot make an outbound HTTP client: {0}")]
    HttpClient(String),
    /// The registration options are not usable.
    #[error("{0}")]
    Registration(String),
    /// The address could not be bound or the server failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the server until a shutdown signal; returns once the ledger is closed.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    // Naming the backend here makes a build without it a compile error rather than a
    // panic at the first signature; a second install (tests, embedding) is harmless.
    crate::jose::install();
    crate::http::observe::install_metrics();
    // Before anything is opened: the ledger's files count against the same limit.
    let descriptors = crate::listener::raise_descriptor_limit();
    let dir = match &args.store {
        Store::Embedded => args.data_dir.display().to_string(),
        Store::Postgres(url) => crate::ledger::postgres::describe_url(url),
    };
    let (ledger, report) = Ledger::open(
        &args.store,
        &args.data_dir,
        LedgerOptions {
            clock: clock(&args),
            channel_commands_max: args.commands_queued_max as usize,
            snapshot_every_records: args.snapshot_every_records,
            snapshots_kept: args
                .snapshots_kept
                .map(|kept| usize::try_from(kept).unwrap_or(usize::MAX)),
            ..LedgerOptions::default()
        },
    )
    .map_err(|source| ServeError::Ledger {
        dir: dir.clone(),
        source,
    })?;
    if report.recovery.torn_bytes > 0 {
        tracing::warn!(
            torn_bytes = report.recovery.torn_bytes,
            "recovered from a torn write at the end of the ledger"
        );
    }
    let data = DataDir::new(&args.data_dir).with_keys(args.keys_dir.clone());
    let secrets = match ledger.read(|s| s.admin_token_count()) {
        0 => SecretHasher::load_or_create(&data),
        _ => SecretHasher::load_existing(&data),
    }
    .map_err(ServeError::Keys)?;
    // Everything that reads options or reaches a store comes before the first record, so
    // that a start that cannot serve fails with the ledger as it found it.
    let people = Arc::new(open_people(&args.store, &data, &secrets, &ledger)?);
    let registration = registration_of(&args, &secrets)?;
    let gateway = gateway_of(&args).map_err(|e| ServeError::Gateway(e.to_string()))?;
    let first_admin = first_admin_token(&ledger, &secrets, args.admin_token.as_deref())?;
    let banner_shown = std::cell::Cell::new(false);
    let ledger = Arc::new(ledger);
    let served = (|| {
        let (signing_key, key_startup) = crate::keys::current(&data, &ledger, args.signing_alg)?;
        let key_line = key_banner(&signing_key, &key_startup);
        let signing_keys = Arc::new(SigningKeys::new(data.clone(), signing_key));
        let started = Started {
            first_admin: first_admin.clone(),
            key_line,
            descriptors,
            registration,
            gateway,
            banner_shown: &banner_shown,
        };
        actix_web::rt::System::new().block_on(serve(
            &args,
            &data,
            Arc::clone(&ledger),
            secrets,
            signing_keys,
            people,
            started,
        ))
    })();
    let served = match (served, &first_admin) {
        // A later step failed after the first admin token was recorded: print it, or it is
        // lost with this process, and the next start would find the ledger has one.
        (Err(source), FirstAdmin::Generated(token)) if !banner_shown.get() => {
            Err(ServeError::AfterFirstAdmin {
                token: token.clone(),
                source: Box::new(source),
            })
        }
        (served, _) => served,
    };
    // The server has stopped, but its workers may still be dropping their handles on
    // their own threads: stop the sequencer here and wait for it, so that what it accepted
    // is appended and the closing snapshot written before the process exits.
    ledger.shutdown();
    drop(ledger);
    served
}

/// The people directory over the store that suits the ledger: a row per person in the
/// ledger's PostgreSQL database (every node reads the same keys, and an erasure on one
/// reaches all), or files in the data directory. Keys of people the ledger says were
/// erased are destroyed now, finishing an erasure a crash interrupted.
pub fn open_people(
    store: &Store,
    data: &DataDir,
    secrets: &SecretHasher,
    ledger: &Ledger,
) -> Result<People, ServeError> {
    let keys: Arc<dyn PersonKeyStore> = match store {
        Store::Embedded => Arc::new(FileKeys::open(data).map_err(ServeError::Keys)?),
        Store::Postgres(url) => Arc::new(PostgresKeys::open(url).map_err(ServeError::Keys)?),
    };
    let people = People::new(keys, secrets);
    let destroyed = people
        .destroy_erased_keys(ledger)
        .map_err(ServeError::Keys)?;
    if destroyed > 0 {
        tracing::warn!(
            destroyed,
            "destroyed the keys of people erased before a crash let their erasure finish"
        );
    }
    let indexed = people.index_older_skeletons(ledger);
    if indexed > 0 {
        tracing::info!(
            indexed,
            "computed the email skeletons of people registered before skeletons were recorded"
        );
    }
    Ok(people)
}

fn key_banner(key: &CurrentKey, startup: &Startup) -> String {
    let now = format!("  signing key: {} ({})", key.kid, key.alg);
    match startup {
        Startup::Kept => now,
        Startup::Made => format!("{now}, made now"),
        Startup::Rotated { from, from_alg } => format!(
            "{now}, rotated from {from} ({from_alg}) as --signing-alg asked; {from} stays published for 24 hours"
        ),
    }
}

fn clock(args: &ServeArgs) -> crate::clock::Clock {
    match args.clock_offset_seconds {
        0 => crate::clock::Clock::System,
        seconds => crate::clock::Clock::Offset(seconds),
    }
}

/// Shortest admin token accepted from `WRIT_ADMIN_TOKEN`.
pub const ADMIN_TOKEN_CHARS_MIN: usize = 32;

/// What starting did, for the banner, and the options it checked before the first record.
struct Started<'a> {
    first_admin: FirstAdmin,
    key_line: String,
    descriptors: crate::listener::Descriptors,
    registration: crate::http::registration::Registration,
    gateway: crate::http::gateway::Gateway,
    /// Set once the banner (with a generated admin token) is printed.
    banner_shown: &'a std::cell::Cell<bool>,
}

/// What the first start did about the admin token, for the banner.
#[derive(Clone)]
enum FirstAdmin {
    /// The ledger already had one.
    Existing,
    /// Generated now: shown this once.
    Generated(String),
    /// Taken from `WRIT_ADMIN_TOKEN`.
    FromEnvironment,
}

fn first_admin_token(
    ledger: &Ledger,
    secrets: &SecretHasher,
    given: Option<&str>,
) -> Result<FirstAdmin, ServeError> {
    if ledger.read(|s| s.admin_token_count()) > 0 {
        return Ok(FirstAdmin::Existing);
    }
    let (token, outcome) = match given {
        Some(token)
            if token.chars().count() < ADMIN_TOKEN_CHARS_MIN
                || token.chars().any(char::is_whitespace) =>
        {
            return Err(ServeError::AdminToken(format!(
                "WRIT_ADMIN_TOKEN must be at least {ADMIN_TOKEN_CHARS_MIN} characters without spaces; generate one with `openssl rand -base64 32`"
            )));
        }
        Some(token) => (token.to_owned(), FirstAdmin::FromEnvironment),
        None => {
            let token = new_secret("wrt_admin_");
            (token.clone(), FirstAdmin::Generated(token))
        }
    };
    let initial = NewAdminCredential {
        name: INITIAL_ADMIN_CREDENTIAL_NAME.to_owned(),
        role: AdminRole::Admin,
        expires_at: None,
    };
    match create_admin_token(ledger, secrets, &token, Actor::System, true, initial) {
        Ok(_) => Ok(outcome),
        // Another node of this ledger made the first admin token meanwhile (or, given the
        // same WRIT_ADMIN_TOKEN, this very one): that one stands.
        Err(SubmitError::Refused(Refusal::NotFirstAdminToken | Refusal::AdminTokenExists)) => {
            Ok(FirstAdmin::Existing)
        }
        Err(err) => Err(ServeError::AdminToken(err.to_string())),
    }
}

/// The name of the admin credential made on a ledger's first start.
pub const INITIAL_ADMIN_CREDENTIAL_NAME: &str = "initial";

/// What an admin credential is to be: its name, role and expiry.
#[derive(Debug, Clone)]
pub struct NewAdminCredential {
    /// Unique among credentials not revoked.
    pub name: String,
    /// What it may do.
    pub role: AdminRole,
    /// When it stops being accepted (`None`: never).
    pub expires_at: Option<Timestamp>,
}

/// Records `token` (by its keyed hash) as an admin credential; returns its id. `first`:
/// only as the ledger's first one.
pub fn create_admin_token(
    ledger: &Ledger,
    secrets: &SecretHasher,
    token: &str,
    by: Actor,
    first: bool,
    credential: NewAdminCredential,
) -> Result<String, SubmitError> {
    let token_id = new_id("adm_");
    let command = Command::IssueAdminToken {
        token_id: token_id.clone(),
        token_hash: secrets.hash(token),
        by,
        first,
        name: credential.name,
        role: credential.role,
        expires_at: credential.expires_at,
    };
    ledger.submit_blocking(command)?;
    Ok(token_id)
}

async fn serve(
    args: &ServeArgs,
    data: &DataDir,
    ledger: Arc<Ledger>,
    secrets: SecretHasher,
    signing_keys: Arc<SigningKeys>,
    people: Arc<People>,
    started: Started<'_>,
) -> Result<(), ServeError> {
    let listen = args.listen;
    let listen_error = |source| ServeError::Listen {
        addr: listen,
        source,
    };
    // Bind first, so that with port 0 the issuer names the port actually taken.
    let listener = crate::listener::bind(listen, args.listen_backlog_max).map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    let issuer = args
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let head = ledger.head();
    let clock = clock(args);
    let token_limits = Arc::new(crate::http::limits::TokenRateLimits::new(
        args.token_requests_per_minute,
    ));
    let trusted_issuers = Arc::new(crate::issuers::TrustedIssuers::new(
        args.trusted_issuers.clone(),
    )?);
    let trusted: Vec<String> = trusted_issuers.issuers().map(str::to_owned).collect();
    // A configured origin or issuer names the ledger; otherwise the name it was first
    // published under stays, so a restart on another port does not rename it.
    let origin = args
        .checkpoint_origin
        .clone()
        .or_else(|| {
            args.issuer
                .as_deref()
                .map(crate::checkpoints::origin_of_issuer)
        })
        .or_else(|| ledger.read(|s| s.checkpoint_keys().last().map(|key| key.name.clone())))
        .unwrap_or_else(|| crate::checkpoints::origin_of_issuer(&issuer));
    let checkpoints = Arc::new(Checkpoints::start(data, &ledger, &origin).await?);
    // The first checkpoint is signed before the server answers, so the head always has one.
    checkpoints.sign_now(&ledger);
    actix_web::rt::spawn(Arc::clone(&checkpoints).run(
        Arc::downgrade(&ledger),
        args.checkpoint_every_records,
        args.checkpoint_every_ms,
    ));
    // Another node of the ledger may rotate the signing key: sign with the new one.
    actix_web::rt::spawn(Arc::clone(&signing_keys).follow(Arc::downgrade(&ledger)));
    let checkpoint_key = checkpoints.key().verifier_key();
    let audit_gates = Arc::new(crate::http::audit::AuditGates::default());
    let keks = Arc::new(crate::kek::Keks::load(
        &data.keys(),
        args.kek_file.as_deref(),
        args.kek.as_deref(),
    )?);
    let connections = Arc::new(
        crate::connections::Connections::new(Arc::clone(&keks), &issuer)
            .map_err(|err| ServeError::HttpClient(err.to_string()))?,
    );
    actix_web::rt::spawn(Arc::clone(&connections).refresh_in_background(
        Arc::downgrade(&ledger),
        clock.clone(),
        std::time::Duration::from_secs(args.connection_refresh_every_seconds),
        std::time::Duration::from_secs(args.connection_refresh_window_seconds),
    ));
    actix_web::rt::spawn(Arc::clone(&connections).revoke_in_background(
        Arc::downgrade(&ledger),
        clock.clone(),
        args.upstream_revocation_retry_seconds_min,
    ));
    let gateway = Arc::new(started.gateway);
    let registration = Arc::new(started.registration);
    let registration_line = registration.describe();
    let client_metadata = Arc::new(
        crate::client_metadata::ClientMetadata::new(args.client_metadata_loopback)
            .map_err(ServeError::Gateway)?,
    );
    let descriptors = started.descriptors;
    let connections_max = args
        .connections_max
        .unwrap_or_else(|| crate::listener::connections_max_for(descriptors.now));
    if connections_max
        > descriptors
            .now
            .saturating_sub(crate::listener::DESCRIPTORS_RESERVED)
    {
        tracing::warn!(
            connections_max,
            descriptors = descriptors.now,
            "--connections-max leaves too few descriptors for the ledger's files and outbound calls; accepting may fail with EMFILE"
        );
    }
    let (workers, connections_per_worker) = crate::listener::per_worker(connections_max);
    let body_deadline = crate::listener::ms(args.request_body_timeout_ms);
    let throttle = Arc::new(crate::http::throttle::SignInThrottle::new(
        crate::http::throttle::ThrottleLimits {
            failures_free: args.sign_in_failures_free,
            address_failures_free: args.sign_in_address_failures_free,
            delay_seconds_first: args.sign_in_delay_seconds_first,
            delay_seconds_max: args.sign_in_delay_seconds_max,
            entries_max: usize::try_from(args.sign_in_throttle_entries_max).unwrap_or(usize::MAX),
        },
    ));
    let hashing = Arc::new(crate::http::throttle::PasswordHashing::new(
        args.password_hash_memory_mib_max,
        std::time::Duration::from_millis(args.password_hash_wait_ms_max),
    ));
    let trust_forwarded_for = args.trust_forwarded_for;
    let server = HttpServer::new({
        let issuer = issuer.clone();
        move || {
            let state = AppState {
                ledger: Arc::clone(&ledger),
                issuer: issuer.clone(),
                secrets: secrets.clone(),
                clock: clock.clone(),
                signing_keys: Arc::clone(&signing_keys),
                token_limits: Arc::clone(&token_limits),
                trusted_issuers: Arc::clone(&trusted_issuers),
                checkpoints: Arc::clone(&checkpoints),
                audit_gates: Arc::clone(&audit_gates),
                people: Arc::clone(&people),
                keks: Arc::clone(&keks),
                connections: Arc::clone(&connections),
                gateway: Arc::clone(&gateway),
                registration: Arc::clone(&registration),
                client_metadata: Arc::clone(&client_metadata),
                throttle: Arc::clone(&throttle),
                hashing: Arc::clone(&hashing),
                trust_forwarded_for,
            };
            App::new()
                .wrap(actix_web::middleware::from_fn(move |request, next| {
                    crate::http::read_deadline::read_deadline(body_deadline, request, next)
                }))
                .wrap(actix_web::middleware::from_fn(
                    crate::http::observe::observe,
                ))
                .app_data(web::Data::new(state))
                .configure(routes)
        }
    })
    .shutdown_timeout(args.shutdown_grace_seconds)
    .workers(workers)
    .max_connections(connections_per_worker)
    .client_request_timeout(crate::listener::ms(args.request_head_timeout_ms))
    .keep_alive(crate::listener::ms(args.connection_idle_timeout_ms))
    .client_disconnect_timeout(crate::listener::ms(args.client_disconnect_timeout_ms))
    // writ's own handlers, installed before the banner: actix installs its handlers only
    // once the server first runs, after the banner, and a SIGTERM sent in between (as
    // soon as a script read the banner) killed the process outright.
    .disable_signals()
    .listen(listener)
    .map_err(listen_error)?;
    let stop_signals = StopSignals::install().map_err(listen_error)?;
    let server = server.run();
    actix_web::rt::spawn(stop_signals.then_stop(server.handle()));
    println!("writ listening on http://{bound}");
    println!("  issuer:   {issuer}");
    match &args.store {
        Store::Embedded => println!(
            "  data dir: {} (ledger at record {})",
            args.data_dir.display(),
            head.seq
        ),
        Store::Postgres(url) => {
            let target = crate::ledger::postgres::describe_url(url);
            println!("  store:    {target} (ledger at record {})", head.seq);
            println!(
                "  data dir: {} (keys and snapshots)",
                args.data_dir.display()
            );
        }
    }
    for trusted in &trusted {
        println!("  trusted issuer: {trusted}");
    }
    println!("  client registration: {registration_line}");
    println!(
        "  connections: at most {} open ({workers} workers x {connections_per_worker}), open-file limit {}{}",
        workers * connections_per_worker,
        descriptors.now,
        match descriptors.now > descriptors.before {
            true => format!(" (raised from {})", descriptors.before),
            false => String::new(),
        }
    );
    println!("{}", started.key_line);
    println!("  checkpoint key: {checkpoint_key}");
    match started.first_admin {
        FirstAdmin::Generated(token) => println!("  admin token (shown once, keep it): {token}"),
        FirstAdmin::FromEnvironment => println!("  admin token: the one given in WRIT_ADMIN_TOKEN"),
        FirstAdmin::Existing => {}
    }
    // A blank line ends the banner (scripts read up to it).
    println!();
    started.banner_shown.set(true);
    // Scripts and tests read these lines as soon as they are printed.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    server.await.map_err(listen_error)
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from the moment they are installed.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either, then stops the server gracefully: no new connections, requests
    /// in flight answered (within the shutdown grace), then the ledger closes.
    async fn then_stop(mut self, server: actix_web::dev::ServerHandle) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM: stopping gracefully"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT: stopping gracefully"),
        }
        server.stop(true).await;
    }
}

/// How clients register, from the options: a registration token only where it is used,
/// and as hard to guess as an admin token.
fn registration_of(
    args: &ServeArgs,
    secrets: &SecretHasher,
) -> Result<crate::http::registration::Registration, ServeError> {
    use crate::http::registration::{Registration, RegistrationMode};
    let token_hash = match (&args.registration_token, args.registration) {
        (None, _) => None,
        (Some(_), RegistrationMode::Open | RegistrationMode::Off) => {
            return Err(ServeError::Registration(
                "WRIT_REGISTRATION_TOKEN is used only with --registration token".into(),
            ));
        }
        (Some(token), RegistrationMode::Token)
            if token.chars().count() < ADMIN_TOKEN_CHARS_MIN
                || token.chars().any(char::is_whitespace) =>
        {
            return Err(ServeError::Registration(format!(
                "WRIT_REGISTRATION_TOKEN must be at least {ADMIN_TOKEN_CHARS_MIN} characters without spaces; generate one with `openssl rand -base64 32`"
            )));
        }
        (Some(token), RegistrationMode::Token) => Some(secrets.hash(token)),
    };
    Ok(Registration::new(
        args.registration,
        token_hash,
        args.registrations_per_minute,
    ))
}

/// The tool-call gateway's client and servers, from the options.
fn gateway_of(args: &ServeArgs) -> anyhow::Result<crate::http::gateway::Gateway> {
    let limits = crate::mcp::Limits {
        timeout: std::time::Duration::from_millis(args.mcp_timeout_ms.max(1)),
        connect_timeout: std::time::Duration::from_millis(args.mcp_connect_timeout_ms),
        response_bytes_max: args.mcp_response_bytes_max.max(1),
    };
    Ok(crate::http::gateway::Gateway {
        client: crate::mcp::McpClient::new(limits)?,
        approval_ttl_seconds: args.approval_ttl_seconds,
    })
}
