//! The `writ` command line: argument parsing and wiring only; the work is in the library.
//!
//! Exit codes: 0 success; 1 a ledger failed verification; 2 bad input (a path that is not
//! a ledger, an unreadable file, a bad argument).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::ledger::Store;
use crate::offline::{self, OfflineError, Verdict};
use crate::trail::TrailFormat;

mod admin_token;

/// writ: an authorization server for AI agents, on a hash-chained event ledger.
#[derive(Debug, Parser)]
#[command(name = "writ", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Commands,
    /// Log lines as `text` (for people) or `json` (one object a line, for collectors).
    /// What is logged is set by `WRIT_LOG` (default `warn`; `info`, or `debug` for one
    /// line per request with its id, route, status and latency).
    #[arg(long, global = true, env = "WRIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable, one event a line with its fields and spans.
    Text,
    /// One JSON object a line, with the request span's fields (its id among them).
    Json,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run the server on a data directory (created on first start).
    Serve(Box<crate::serve::ServeArgs>),
    /// Verify a ledger: gap-free seqs, the hash chain, every record's hash and every
    /// event's schema. Names the first bad record; exits 1 if there is one.
    Verify {
        /// A data directory, or an export file (JSON lines, as `writ export` writes).
        #[arg(required_unless_present = "store", conflicts_with = "store")]
        path: Option<PathBuf>,
        /// Verify the ledger in this PostgreSQL database instead (postgres://...), up to
        /// the head it has when verification starts; nothing in it is changed.
        #[arg(long, value_parser = parse_postgres_url)]
        store: Option<String>,
    },
    /// Rebuild the read models as of a record (verifying on the way) and print a summary.
    Replay {
        /// The data directory.
        #[arg(long, env = "WRIT_DATA_DIR", default_value = "./writ-data")]
        data_dir: PathBuf,
        /// Where the records are: `embedded` (in the data directory) or a PostgreSQL URL
        /// (postgres://...), replayed from record 1 without snapshots.
        #[arg(long, env = "WRIT_STORE", default_value = "embedded", value_parser = Store::parse, hide_env_values = true)]
        store: Store,
        /// The last record to include (default: the end of the ledger).
        #[arg(long)]
        as_of_seq: Option<u64>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the ledger as JSON lines, one record a line (the format of schemas/LEDGER.md);
    /// with --audit, the compliance trail instead: one row per record, "user X, via agent
    /// chain Z, did Y, at T, outcome" with its record's seq and hash, as JSON lines or
    /// spreadsheet-safe CSV, replaying (and verifying) the ledger from record 1.
    Export {
        /// The data directory.
        #[arg(long, env = "WRIT_DATA_DIR", default_value = "./writ-data")]
        data_dir: PathBuf,
        /// Where the records are: `embedded` (in the data directory) or a PostgreSQL URL
        /// (postgres://...).
        #[arg(long, env = "WRIT_STORE", default_value = "embedded", value_parser = Store::parse, hide_env_values = true)]
        store: Store,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Export the compliance trail rather than the records.
        #[arg(long)]
        audit: bool,
        /// `jsonl` (the default) or, with --audit, `csv` (cells a spreadsheet would run
        /// as a formula get a leading `'`).
        #[arg(long, value_enum, default_value_t = TrailFormat::Jsonl)]
        format: TrailFormat,
    },
    /// Print the compliance trail: one line per record, "user X, via agent A then agent
    /// B, did Y on Z, at T, outcome, seq N, hash H", rebuilt by replaying (and verifying)
    /// the ledger. People and agents are named by id, never by email.
    Audit {
        /// The data directory.
        #[arg(long, env = "WRIT_DATA_DIR", default_value = "./writ-data")]
        data_dir: PathBuf,
        /// The first record to tell (default 1). The replay starts from the newest
        /// snapshot before it, if there is one, rather than from record 1.
        #[arg(long)]
        from_seq: Option<u64>,
    },
    /// Copy an embedded ledger into PostgreSQL, verifying every record, in batches, then
    /// check both end at the same record with the same hash. With the server stopped (the
    /// data directory's lock is taken). The database must be empty or hold exactly a prefix
    /// of the ledger, from a migration that stopped: copying then resumes after it. Then
    /// serve with the same data directory (its keys are the ledger's) and `--store`.
    Migrate {
        /// The embedded ledger's data directory.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
        #[arg(long, value_parser = parse_postgres_url)]
        to: String,
    },
    /// Administration of a data directory (with the server stopped: it holds the lock; a
    /// running server rotates its key through `POST /api/v1/keys/rotate`).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Harnesses for writ's own tests and benchmarks.
    #[command(hide = true, subcommand)]
    Internal(crate::harness::Harness),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Admin credentials: create, list, revoke.
    #[command(subcommand)]
    Token(admin_token::AdminTokenCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(AdminKeysCommand),
    /// Key-encryption keys (the keys that wrap upstream secrets).
    #[command(subcommand)]
    Kek(AdminKekCommand),
    /// Erase a person (GDPR Art. 17): deactivate them and revoke their tokens, record the
    /// erasure, and destroy the key their email, name and tokens' intents were sealed
    /// under. The chain still verifies; their data reads "[erased]" from then on. With the
    /// server stopped; while it runs, use `POST /api/v1/users/{id}/erase` instead.
    EraseUser {
        /// The person's user id.
        user_id: String,
        /// The data directory.
        #[arg(long, env = "WRIT_DATA_DIR", default_value = "./writ-data")]
        data_dir: PathBuf,
        /// Where the records are: `embedded` (in the data directory) or a PostgreSQL URL.
        #[arg(long, env = "WRIT_STORE", default_value = "embedded", value_parser = Store::parse, hide_env_values = true)]
        store: Store,
        /// Where the keys are (default `<data-dir>/keys`): the one every node of the
        /// ledger shares.
        #[arg(long, env = "WRIT_KEYS_DIR")]
        keys_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum AdminKeysCommand {
    /// Make a new signing key current from the next start; the previous one stays in the
    /// JWKS for 24 hours. With the server stopped; while it runs, use
    /// `POST /api/v1/keys/rotate` (admin token) instead.
    Rotate {
        /// The data directory.
        #[arg(long, env = "WRIT_DATA_DIR", default_value = "./writ-data")]
        data_dir: PathBuf,
        /// Where the records are: `embedded` (in the data directory) or a PostgreSQL URL.
        #[arg(long, env = "WRIT_STORE", default_value = "embedded", value_parser = Store::parse, hide_env_values = true)]
        store: Store,
        /// Where the keys are (default `<data-dir>/keys`): the one every node of the
        /// ledger shares.
        #[arg(long, env = "WRIT_KEYS_DIR")]
        keys_dir: Option<PathBuf>,
        /// The new key's algorithm: EdDSA, ES256 or RS256 (default: the current key's).
        /// `writ serve --signing-alg` with another algorithm rotates again at start.
        #[arg(long, value_parser = crate::keys::parse_algorithm)]
        alg: Option<writ_schemas::SigningAlgorithm>,
    },
}

#[derive(Debug, Subcommand)]
enum AdminKekCommand {
    /// Add a new current key-encryption key to the key file (older keys stay), then
    /// re-wrap under it every server's OAuth client secret and every held connection's
    /// tokens wrapped under an older key, one record each. Afterwards the older keys can be
    /// removed from the file. With the server stopped (every node: a running one knows only
    /// the keys it loaded at start).
    Rotate {
        /// The data directory.
        #[arg(long, env = "WRIT_DATA_DIR", default_value = "./writ-data")]
        data_dir: PathBuf,
        /// Where the records are: `embedded` (in the data directory) or a PostgreSQL URL.
        #[arg(long, env = "WRIT_STORE", default_value = "embedded", value_parser = Store::parse, hide_env_values = true)]
        store: Store,
        /// Where the keys are (default `<data-dir>/keys`): the one every node of the
        /// ledger shares.
        #[arg(long, env = "WRIT_KEYS_DIR")]
        keys_dir: Option<PathBuf>,
        /// The key file `writ serve` uses (default `<keys-dir>/kek.keys`).
        #[arg(long, env = "WRIT_KEK_FILE")]
        kek_file: Option<PathBuf>,
        /// A key given as `ID:BASE64URL-KEY` is refused here: this command rotates the
        /// keys of a file.
        #[arg(long, env = "WRIT_KEK", hide_env_values = true)]
        kek: Option<String>,
    },
}

fn admin(command: AdminCommand) -> Result<(), String> {
    match command {
        AdminCommand::Keys(AdminKeysCommand::Rotate {
            data_dir,
            store,
            keys_dir,
            alg,
        }) => rotate_keys(&data_dir, &store, keys_dir, alg),
        AdminCommand::Kek(AdminKekCommand::Rotate {
            data_dir,
            store,
            keys_dir,
            kek_file,
            kek,
        }) => {
            if kek.is_some() {
                return Err("the current key-encryption key comes from WRIT_KEK (or --kek), which this command cannot change; keep the keys in a file instead: write each as a line `ID BASE64URL-KEY` in the key file (--kek-file, default <keys-dir>/kek.keys; the last line is current), unset WRIT_KEK, and run this again".into());
            }
            rotate_kek(&data_dir, &store, keys_dir, kek_file)
        }
        AdminCommand::EraseUser {
            user_id,
            data_dir,
            store,
            keys_dir,
        } => erase_user(&data_dir, &store, keys_dir, writ_schemas::UserId(user_id)),
        AdminCommand::Token(command) => admin_token::run(command),
    }
}

fn erase_user(
    data_dir: &std::path::Path,
    store: &Store,
    keys_dir: Option<PathBuf>,
    user_id: writ_schemas::UserId,
) -> Result<(), String> {
    let data = crate::ledger::datadir::DataDir::new(data_dir).with_keys(keys_dir);
    if *store == Store::Embedded {
        data.check_existing()
            .map_err(|err| format!("{err}; start `writ serve` once to create it"))?;
    }
    let (ledger, _) = crate::Ledger::open(store, data_dir, crate::LedgerOptions::default())
        .map_err(|err| match err {
            crate::ledger::LedgerError::Storage(crate::ledger::storage::StorageError::Locked(
                dir,
            )) => format!(
                "{dir} is in use by a running `writ serve`, which holds its lock; erase through that server instead: POST /api/v1/users/{user_id}/erase with an admin token"
            ),
            other => other.to_string(),
        })?;
    // The deployment's secret-hashing key finds the person by email hash: a data
    // directory's own, never a new one.
    let secrets =
        crate::secrets::SecretHasher::load_existing(&data).map_err(|err| err.to_string())?;
    let people = crate::serve::open_people(store, &data, &secrets, &ledger)
        .map_err(|err| err.to_string())?;
    let erased =
        crate::people::erase_blocking(&ledger, &people, &user_id, writ_schemas::Actor::System)
            .map_err(|err| err.to_string());
    ledger.close();
    let erased = erased?;
    println!("{user_id}");
    eprintln!(
        "erased user {user_id}: {} token(s) revoked, {}; the ledger records the erasure and still verifies",
        erased.tokens_revoked,
        if erased.key_destroyed {
            "their key destroyed"
        } else {
            "no key was held for them (registered before sealing: see README, Erasure)"
        }
    );
    Ok(())
}

fn rotate_keys(
    data_dir: &std::path::Path,
    store: &Store,
    keys_dir: Option<PathBuf>,
    alg: Option<writ_schemas::SigningAlgorithm>,
) -> Result<(), String> {
    let data = crate::ledger::datadir::DataDir::new(data_dir).with_keys(keys_dir);
    if *store == Store::Embedded {
        data.check_existing()
            .map_err(|err| format!("{err}; start `writ serve` once to create it"))?;
    }
    let (ledger, _) = crate::Ledger::open(store, data_dir, crate::LedgerOptions::default())
        .map_err(|err| match err {
            crate::ledger::LedgerError::Storage(crate::ledger::storage::StorageError::Locked(
                dir,
            )) => format!(
                "{dir} is in use by a running `writ serve`, which holds its lock; rotate through that server instead: POST /api/v1/keys/rotate with an admin token (optional body {{\"alg\": \"ES256\"}})"
            ),
            other => other.to_string(),
        })?;
    let rotated = crate::keys::rotate(&data, &ledger, alg, writ_schemas::Actor::System)
        .map_err(|err| err.to_string())?;
    ledger.close();
    println!("{}", rotated.kid);
    eprintln!(
        "signing key {} ({}) is current from the next start; the previous key stays published for 24 hours",
        rotated.kid, rotated.alg
    );
    Ok(())
}

fn rotate_kek(
    data_dir: &std::path::Path,
    store: &Store,
    keys_dir: Option<PathBuf>,
    kek_file: Option<PathBuf>,
) -> Result<(), String> {
    let data = crate::ledger::datadir::DataDir::new(data_dir).with_keys(keys_dir);
    if *store == Store::Embedded {
        data.check_existing()
            .map_err(|err| format!("{err}; start `writ serve` once to create it"))?;
    }
    let file = crate::kek::file_path(&data.keys(), kek_file.as_deref());
    // Loading would make a first key in a missing file: here that is a wrong path.
    if !file.exists() {
        return Err(format!(
            "no key file at {}; give --kek-file the one `writ serve` uses",
            file.display()
        ));
    }
    // The ledger first: a running server holds its lock, and the key file stays as it is.
    let (ledger, _) = crate::Ledger::open(store, data_dir, crate::LedgerOptions::default())
        .map_err(|err| match err {
            crate::ledger::LedgerError::Storage(crate::ledger::storage::StorageError::Locked(
                dir,
            )) => format!(
                "{dir} is in use by a running `writ serve`, which holds its lock; stop it first: a running server knows only the key-encryption keys it loaded at start"
            ),
            other => other.to_string(),
        })?;
    let mut keks =
        crate::kek::Keks::load(&data.keys(), Some(&file), None).map_err(|err| err.to_string())?;
    let older: Vec<String> = keks.ids().map(str::to_owned).collect();
    let new_id = keks.add_key().map_err(|err| err.to_string())?;
    let rewrapped = crate::rewrap::rewrap_stale(&ledger, &keks);
    ledger.close();
    let done = rewrapped.map_err(|err| {
        format!(
            "{err}; key-encryption key {new_id} is in {} and current, and what was re-wrapped so far is recorded: run this again to finish",
            file.display()
        )
    })?;
    println!("{new_id}");
    eprintln!(
        "key-encryption key {new_id} is current; {} secret(s) re-wrapped under it ({} server client secret(s), {} token(s) of {} connection(s))",
        done.secrets(),
        done.server_secrets,
        done.connection_tokens,
        done.connections
    );
    eprintln!(
        "every secret writ still uses is wrapped under {new_id}: the older key(s) {} can be removed from {} once every node has restarted with it",
        older.join(", "),
        file.display()
    );
    Ok(())
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WRIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        );
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Commands::Serve(args) => {
            return match crate::serve::run(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("writ serve: {err}");
                    ExitCode::from(2)
                }
            };
        }
        Commands::Admin(command) => {
            return match admin(command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("writ admin: {err}");
                    ExitCode::from(2)
                }
            };
        }
        Commands::Verify { path, store } => return verify(path.as_deref(), store.as_deref()),
        Commands::Replay {
            data_dir,
            store,
            as_of_seq,
            json,
        } => replay(&data_dir, &store, as_of_seq, json),
        Commands::Export {
            data_dir,
            store,
            output,
            audit: true,
            format,
        } => export_audit(&data_dir, &store, output, format),
        Commands::Export {
            format: TrailFormat::Csv,
            ..
        } => Err(OfflineError::Input(
            "records are exported as JSON lines only; --format csv is for the trail (add --audit)"
                .into(),
        )),
        Commands::Export {
            data_dir,
            store,
            output,
            ..
        } => export(&data_dir, &store, output),
        Commands::Audit { data_dir, from_seq } => audit(&data_dir, from_seq),
        Commands::Migrate { from, to } => return migrate(&from, &to),
        Commands::Internal(harness) => return harness.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("writ: {err}");
            ExitCode::from(2)
        }
    }
}

fn progress_bar(total_bytes: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(total_bytes);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb.to_owned());
    bar
}

fn migrate(from: &std::path::Path, to: &str) -> ExitCode {
    let bar = records_bar(0, "copying");
    let migrated = crate::migrate::migrate(from, to, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match migrated {
        Ok(done) => {
            let resumed = match done.resumed_after {
                0 => String::new(),
                seq => format!(", resuming after record {seq} already there"),
            };
            println!(
                "ok: copied {} records{resumed}; {} ends at record {} with hash {}, as {} does",
                done.copied,
                crate::ledger::postgres::describe_url(to),
                done.head.seq,
                done.head.hash,
                from.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("writ migrate: {err}");
            ExitCode::from(2)
        }
    }
}

/// `--store` of the commands that read PostgreSQL only.
fn parse_postgres_url(text: &str) -> Result<String, String> {
    match Store::parse(text)? {
        Store::Postgres(url) => Ok(url),
        Store::Embedded => {
            Err("an embedded ledger is named by its data directory, not by --store".into())
        }
    }
}

/// A progress bar counting records (for a ledger in PostgreSQL, whose bytes are not known).
fn records_bar(total_records: u64, verb: &str) -> ProgressBar {
    let bar = ProgressBar::new(total_records);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} records ({per_sec}, {eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb.to_owned());
    bar
}

fn verify(path: Option<&std::path::Path>, store: Option<&str>) -> ExitCode {
    let (bar, verdict) = match (path, store) {
        (_, Some(url)) => {
            let bar = records_bar(offline::store_records(url), "verifying");
            let verdict = offline::verify_store(url, &mut |done| bar.set_position(done));
            (bar, verdict)
        }
        (Some(path), None) if path.is_dir() => {
            let bar = progress_bar(offline::ledger_bytes(path), "verifying");
            let verdict = offline::verify_dir(path, &mut |done| bar.set_position(done));
            (bar, verdict)
        }
        (Some(path), None) => {
            let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let bar = progress_bar(total, "verifying");
            let verdict = offline::verify_export(path, &mut |done| bar.set_position(done));
            (bar, verdict)
        }
        (None, None) => {
            eprintln!("writ verify: name a data directory, an export file or --store");
            return ExitCode::from(2);
        }
    };
    bar.finish_and_clear();
    match verdict {
        Ok(Verdict::Intact(chain)) => {
            println!(
                "ok: {} records verified; head is record {} with hash {}",
                chain.seq, chain.seq, chain.hash
            );
            ExitCode::SUCCESS
        }
        Ok(Verdict::Broken(bad)) => {
            println!("FAILED: {bad}");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("writ verify: {err}");
            ExitCode::from(2)
        }
    }
}

fn replay(
    dir: &std::path::Path,
    store: &Store,
    as_of_seq: Option<u64>,
    json: bool,
) -> Result<(), OfflineError> {
    let (bar, state) = match store {
        Store::Embedded => {
            let bar = progress_bar(offline::ledger_bytes(dir), "replaying");
            let state = offline::replay(dir, as_of_seq, &mut |done| bar.set_position(done));
            (bar, state)
        }
        Store::Postgres(url) => {
            let bar = records_bar(offline::store_records(url), "replaying");
            let state = offline::replay_store(url, as_of_seq, &mut |done| bar.set_position(done));
            (bar, state)
        }
    };
    let state = state?;
    bar.finish_and_clear();
    let summary = state.summary();
    let text = if json {
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    } else {
        render(&summary)
    };
    println!("{text}");
    Ok(())
}

fn render(s: &writ_projections::Summary) -> String {
    let at = s.at.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
    let a = &s.agents;
    let t = &s.tokens;
    [
        format!("ledger as of record {} (hash {}, at {at})", s.seq, s.hash),
        format!(
            "agents:           {} ({} active, {} disabled, {} expired, {} orphaned; {} need review)",
            a.total, a.active, a.disabled, a.expired, a.orphaned, a.needs_review
        ),
        format!("users:            {} ({} active)", s.users.0, s.users.1),
        format!("api keys:         {} ({} revoked)", s.api_keys.0, s.api_keys.1),
        format!("delegations:      {} ({} active)", s.delegations.0, s.delegations.1),
        format!("session grants:   {} ({} active, {} shared)", s.session_grants.0, s.session_grants.1, s.session_grants.2),
        format!(
            "tokens:           {} ({} active, {} revoked, {} expired, {} exhausted; {} operations)",
            t.issued, t.active, t.revoked, t.expired, t.exhausted, t.operations
        ),
        format!("refresh families: {} ({} with reuse detected)", s.refresh_families.0, s.refresh_families.1),
        format!("signing keys:     {}", s.signing_keys),
    ]
    .join("\n")
}

fn audit(dir: &std::path::Path, from_seq: Option<u64>) -> Result<(), OfflineError> {
    let bar = progress_bar(offline::ledger_bytes(dir), "replaying");
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
    let audited = offline::audit(dir, from_seq, &mut writer, &mut |done| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    match audited.snapshot_seq {
        0 => eprintln!("{} entries, replayed from record 1", audited.entries),
        seq => eprintln!(
            "{} entries, replayed from the snapshot at record {seq}",
            audited.entries
        ),
    }
    Ok(())
}

/// Runs `export` into `output` (made durable before this returns) or standard output,
/// through a 1 MiB buffer; what `export` returned.
fn write_output(
    output: Option<&std::path::Path>,
    export: impl FnOnce(&mut (dyn std::io::Write + Send)) -> Result<u64, OfflineError>,
) -> Result<u64, OfflineError> {
    use std::io::Write as _;
    match output {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|err| {
                OfflineError::Input(format!("cannot create {}: {err}", path.display()))
            })?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
            let written = export(&mut writer)?;
            writer
                .into_inner()
                .map_err(|err| OfflineError::Output(err.into_error()))?
                .sync_all()
                .map_err(OfflineError::Output)?;
            Ok(written)
        }
        None => {
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout());
            let written = export(&mut writer)?;
            writer.flush().map_err(OfflineError::Output)?;
            Ok(written)
        }
    }
}

fn export(
    dir: &std::path::Path,
    store: &Store,
    output: Option<PathBuf>,
) -> Result<(), OfflineError> {
    let bar = match store {
        Store::Embedded => progress_bar(offline::ledger_bytes(dir), "exporting"),
        Store::Postgres(url) => records_bar(offline::store_records(url), "exporting"),
    };
    let mut tick = |done: u64| bar.set_position(done);
    let count = write_output(output.as_deref(), |out| match store {
        Store::Embedded => offline::export(dir, out, &mut tick),
        Store::Postgres(url) => offline::export_store(url, out, &mut tick),
    })?;
    bar.finish_and_clear();
    if let Some(path) = output {
        eprintln!("exported {count} records to {}", path.display());
    }
    Ok(())
}

/// The people directory a trail export opens sealed intents with: the data directory's
/// keys (and, for a PostgreSQL ledger, the database's person keys). Without it sealed
/// intents are left out, and the export says so.
fn trail_people(dir: &std::path::Path, store: &Store) -> Option<crate::people::People> {
    let data = crate::ledger::datadir::DataDir::new(dir);
    let opened = match store {
        Store::Embedded => {
            crate::people::People::open_offline(&data).map_err(|err| err.to_string())
        }
        Store::Postgres(url) => crate::secrets::SecretHasher::load_existing(&data)
            .map_err(|err| err.to_string())
            .and_then(|secrets| {
                let keys = crate::people::PostgresKeys::open(url).map_err(|err| err.to_string())?;
                Ok(crate::people::People::new(
                    std::sync::Arc::new(keys),
                    &secrets,
                ))
            }),
    };
    match opened {
        Ok(people) => Some(people),
        Err(why) => {
            eprintln!("note: stated intents sealed under people's keys are left out: {why}");
            None
        }
    }
}

fn export_audit(
    dir: &std::path::Path,
    store: &Store,
    output: Option<PathBuf>,
    format: TrailFormat,
) -> Result<(), OfflineError> {
    let bar = match store {
        Store::Embedded => progress_bar(offline::ledger_bytes(dir), "exporting the trail"),
        Store::Postgres(url) => records_bar(offline::store_records(url), "exporting the trail"),
    };
    let mut tick = |done: u64| bar.set_position(done);
    let people = trail_people(dir, store);
    let people = people.as_ref();
    let rows = write_output(output.as_deref(), |out| match store {
        Store::Embedded => offline::export_audit(dir, format, people, out, &mut tick),
        Store::Postgres(url) => offline::export_audit_store(url, format, people, out, &mut tick),
    })?;
    bar.finish_and_clear();
    if let Some(path) = output {
        eprintln!("exported the trail of {rows} records to {}", path.display());
    }
    Ok(())
}
