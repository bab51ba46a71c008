//! `writ admin token create | list | revoke`: admin credentials on a data directory (or a
//! `--store`), as the API manages them on a running server. On the embedded store a
//! running server holds the lock, and these commands say to use its API instead; on
//! PostgreSQL they work beside running nodes, which read the records as they tail.

use std::path::PathBuf;

use clap::Subcommand;
use writ_schemas::{Actor, AdminRole, Timestamp};

use crate::decide::Command;
use crate::ledger::Store;
use crate::serve::NewAdminCredential;

/// Longest `--expires-in`, in days: ten years, far beyond any credential's sensible life,
/// and far inside what a timestamp holds.
pub const EXPIRES_IN_DAYS_MAX: u64 = 3650;

/// Where the ledger is: shared by the three commands.
#[derive(Debug, clap::Args)]
pub struct Location {
    /// The data directory.
    #[arg(long, env = "WRIT_DATA_DIR", default_value = "./writ-data")]
    data_dir: PathBuf,
    /// Where the records are: `embedded` (in the data directory) or a PostgreSQL URL.
    #[arg(long, env = "WRIT_STORE", default_value = "embedded", value_parser = Store::parse, hide_env_values = true)]
    store: Store,
    /// Where the keys are (default `<data-dir>/keys`): the one every node of the ledger
    /// shares.
    #[arg(long, env = "WRIT_KEYS_DIR")]
    keys_dir: Option<PathBuf>,
}

/// The role a new credential gets.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// Everything the management API offers.
    Admin,
    /// Reads only: the audit trail, time travel, exports, ledger head, checkpoints and
    /// proofs, and every listing.
    Auditor,
}

/// Admin credentials.
#[derive(Debug, Subcommand)]
pub enum AdminTokenCommand {
    /// Create an admin credential and print it (once; only its keyed hash is kept).
    Create {
        /// The name people know it by, unique among credentials not revoked.
        #[arg(long)]
        name: String,
        /// What it may do.
        #[arg(long, value_enum, default_value_t = RoleArg::Admin)]
        role: RoleArg,
        /// How long it lasts: a number and a unit, `s`, `m`, `h` or `d` (`30d`).
        #[arg(long, conflicts_with = "expires_at", value_parser = parse_expires_in)]
        expires_in: Option<i64>,
        /// When it stops being accepted, in RFC 3339 (`2027-01-31T12:00:00Z`).
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        location: Location,
    },
    /// List the admin credentials not revoked: id, name, role, expiry, status.
    List {
        #[command(flatten)]
        location: Location,
    },
    /// Revoke an admin credential, by id (`adm_...`) or name. The last live credential
    /// with role admin cannot be revoked: create another first.
    Revoke {
        /// The credential's id or name.
        credential: String,
        #[command(flatten)]
        location: Location,
    },
}

/// `--expires-in` in seconds.
fn parse_expires_in(text: &str) -> Result<i64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}` is not a duration such as 90m, 12h or 30d"
            ));
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 90m, 12h or 30d"))?;
    let seconds = number.saturating_mul(unit_seconds);
    if seconds == 0 || seconds > EXPIRES_IN_DAYS_MAX * 86_400 {
        return Err(format!(
            "`{text}`: a credential lasts from 1s to {EXPIRES_IN_DAYS_MAX}d"
        ));
    }
    i64::try_from(seconds).map_err(|_| format!("`{text}` is too long"))
}

/// Runs one of the commands.
pub fn run(command: AdminTokenCommand) -> Result<(), String> {
    match command {
        AdminTokenCommand::Create {
            name,
            role,
            expires_in,
            expires_at,
            location,
        } => {
            let now = crate::clock::Clock::System.now();
            let expires_at = match (expires_in, expires_at) {
                (Some(seconds), _) => Some(now.plus_seconds(seconds)),
                (None, Some(text)) => Some(parse_time(&text, now)?),
                (None, None) => None,
            };
            let role = match role {
                RoleArg::Admin => AdminRole::Admin,
                RoleArg::Auditor => AdminRole::Auditor,
            };
            let credential = NewAdminCredential {
                name,
                role,
                expires_at,
            };
            create(&location, credential)
        }
        AdminTokenCommand::List { location } => list(&location),
        AdminTokenCommand::Revoke {
            credential,
            location,
        } => revoke(&location, &credential),
    }
}

fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
        format!("--expires-at: `{text}` is not an RFC 3339 time such as 2027-01-31T12:00:00Z")
    })?;
    let at = Timestamp::from_datetime(parsed.with_timezone(&chrono::Utc));
    if at <= now {
        return Err(format!("--expires-at: {at} is not in the future"));
    }
    Ok(at)
}

/// Opens the ledger of `location`; on a running server's embedded data directory, says
/// which endpoint does `instead`.
fn open(location: &Location, instead: &str) -> Result<crate::Ledger, String> {
    let data = crate::ledger::datadir::DataDir::new(&location.data_dir)
        .with_keys(location.keys_dir.clone());
    if location.store == Store::Embedded {
        data.check_existing()
            .map_err(|err| format!("{err}; start `writ serve` once to create it"))?;
    }
    let (ledger, _) = crate::Ledger::open(
        &location.store,
        &location.data_dir,
        crate::LedgerOptions::default(),
    )
    .map_err(|err| match err {
        crate::ledger::LedgerError::Storage(crate::ledger::storage::StorageError::Locked(dir)) => {
            format!(
                "{dir} is in use by a running `writ serve`, which holds its lock; use that server instead: {instead} with an admin credential"
            )
        }
        other => other.to_string(),
    })?;
    Ok(ledger)
}

fn create(location: &Location, credential: NewAdminCredential) -> Result<(), String> {
    let ledger = open(location, "POST /api/v1/admin/credentials")?;
    let data = crate::ledger::datadir::DataDir::new(&location.data_dir)
        .with_keys(location.keys_dir.clone());
    let secrets = match ledger.read(|s| s.admin_token_count()) {
        0 => crate::secrets::SecretHasher::load_or_create(&data),
        _ => crate::secrets::SecretHasher::load_existing(&data),
    }
    .map_err(|err| err.to_string());
    let created = secrets.and_then(|secrets| {
        let token = crate::secrets::new_secret(crate::http::ADMIN_CREDENTIAL_PREFIX);
        let (name, role) = (credential.name.clone(), credential.role);
        crate::serve::create_admin_token(
            &ledger,
            &secrets,
            &token,
            Actor::System,
            false,
            credential,
        )
        .map(|token_id| (token, token_id, name, role))
        .map_err(|err| err.to_string())
    });
    ledger.close();
    let (token, token_id, name, role) = created?;
    println!("{token}");
    eprintln!(
        "created admin credential {token_id} ({name:?}, role {role}); it is shown once, keep it"
    );
    Ok(())
}

fn list(location: &Location) -> Result<(), String> {
    let ledger = open(location, "GET /api/v1/admin/credentials")?;
    let now = crate::clock::Clock::System.now();
    let lines: Vec<String> = ledger.read(|s| {
        s.admin_credentials()
            .into_iter()
            .map(|credential| {
                let expires = credential
                    .expires_at
                    .map(|at| at.to_string())
                    .unwrap_or_else(|| "never".into());
                let status = if credential.is_live(now) {
                    "live"
                } else {
                    "expired"
                };
                format!(
                    "{}\t{}\t{}\t{expires}\t{status}",
                    credential.token_id, credential.name, credential.role
                )
            })
            .collect()
    });
    ledger.close();
    println!("ID\tNAME\tROLE\tEXPIRES\tSTATUS");
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

fn revoke(location: &Location, credential: &str) -> Result<(), String> {
    let ledger = open(location, "DELETE /api/v1/admin/credentials/{id}")?;
    // Names never begin with `adm_` (decide refuses such a name), so the two cannot mix.
    let found = ledger.read(|s| {
        s.admin_credentials()
            .into_iter()
            .find(|known| known.token_id == credential || known.name == credential)
            .map(|known| (known.token_id.clone(), known.name.clone()))
    });
    let revoked = match found {
        None => Err(format!(
            "no admin credential has the id or name {credential:?} (or it is already revoked); `writ admin token list` shows them"
        )),
        Some((token_id, name)) => ledger
            .submit_blocking(Command::RevokeAdminToken {
                token_id: token_id.clone(),
                by: Actor::System,
            })
            .map(|_| (token_id, name))
            .map_err(|err| err.to_string()),
    };
    ledger.close();
    let (token_id, name) = revoked?;
    println!("{token_id}");
    eprintln!("revoked admin credential {token_id} ({name:?}); it is refused from now on");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_expires_in;

    #[test]
    fn expires_in_reads_a_number_and_a_unit_within_its_bound() {
        assert_eq!(parse_expires_in("30d"), Ok(30 * 86_400));
        assert_eq!(parse_expires_in("90m"), Ok(5400));
        assert_eq!(parse_expires_in("3650d"), Ok(3650 * 86_400));
        for bad in [
            "",
            "30",
            "d",
            "0s",
            "3651d",
            "1.5h",
            "-1d",
            "30 d",
            "99999999999999999999d",
        ] {
            assert!(parse_expires_in(bad).is_err(), "{bad}");
        }
    }
}
