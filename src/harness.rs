//! `writ internal ...`: harnesses that drive a real ledger in a real process, for the
//! crash test (which kills this process mid-load), for quick load runs by hand, and for
//! ledgers as older releases left them (a policy set recorded without today's checks).
//! Hidden from `--help`; not a user-facing interface.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Subcommand;
use writ_schemas::{
    Actor, AgentRegistered, AgentType, ClientId, Digest, Jti, KeyId, PolicySetAssigned,
    PolicySubject, TokenIssued, UserId,
};

use crate::clock::Clock;
use crate::decide::Command;
use crate::ledger::{Ledger, LedgerOptions, SubmitError};

/// The client id of the load harness's agent.
pub const LOAD_AGENT: &str = "load-agent";
/// The bytes of the load harness's token (its digest is what operations name).
pub const LOAD_TOKEN: &str = "load-token";

/// Hidden harness commands.
#[derive(Debug, Subcommand)]
pub enum Harness {
    /// Records operations on one token from many concurrent submitters, printing
    /// `ack <idempotency-key> <seq>` for each one once it is durable.
    AppendLoad {
        /// The data directory (created if absent).
        #[arg(long)]
        data_dir: PathBuf,
        /// Operations to record.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Concurrent submitters.
        #[arg(long, default_value_t = 64)]
        concurrency: u64,
        /// Prefix of the idempotency keys (distinct per run on one data directory).
        #[arg(long, default_value = "op")]
        key_prefix: String,
        /// Where the records are: `embedded` or a PostgreSQL URL, as for `writ serve`.
        #[arg(long, default_value = "embedded", value_parser = crate::ledger::Store::parse)]
        store: crate::ledger::Store,
    },
    /// Records a person's policy set as an admin, its text as read from a file and not
    /// checked: what a release before the policy bounds could have accepted.
    AssignUnchecked {
        /// The data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where the records are: `embedded` or a PostgreSQL URL, as for `writ serve`.
        #[arg(long, default_value = "embedded", value_parser = crate::ledger::Store::parse)]
        store: crate::ledger::Store,
        /// The person whose set it is.
        #[arg(long)]
        user_id: String,
        /// The file holding the Cedar text.
        #[arg(long)]
        policies_file: PathBuf,
    },
}

impl Harness {
    /// Runs the harness.
    pub fn run(self) -> ExitCode {
        let done = match self {
            Harness::AppendLoad {
                data_dir,
                count,
                concurrency,
                key_prefix,
                store,
            } => append_load(&store, data_dir, count, concurrency, key_prefix),
            Harness::AssignUnchecked {
                data_dir,
                store,
                user_id,
                policies_file,
            } => assign_unchecked(&store, &data_dir, user_id, &policies_file),
        };
        match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("writ internal: {err}");
                ExitCode::from(2)
            }
        }
    }
}

fn setup(ledger: &Ledger, clock: &Clock) -> Result<(), SubmitError> {
    let agent = ClientId::from(LOAD_AGENT);
    if ledger.read(|state| state.agent(&agent).is_none()) {
        ledger.submit_blocking(Command::RegisterAgent(AgentRegistered {
            client_id: agent.clone(),
            name: "load harness".into(),
            owner: None,
            scopes: vec!["load".into()],
            grant_types: vec!["client_credentials".into()],
            redirect_uris: vec![],
            token_endpoint_auth_method: "client_secret_basic".into(),
            secret_hash: Some(Digest::of(b"load-secret")),
            secret_expires_at: None,
            require_consent: false,
            agent_type: AgentType::Autonomous,
            expires_at: None,
            by: Actor::System,
            jwks: None,
        }))?;
    }
    let digest = Digest::of(LOAD_TOKEN.as_bytes());
    let now = clock.now();
    if ledger.read(|state| {
        state
            .token_by_digest(&digest)
            .is_none_or(|token| !token.is_active(now))
    }) {
        ledger.submit_blocking(Command::IssueToken(TokenIssued {
            jti: Jti(format!("load-{}", now.unix_micros())),
            digest,
            kid: KeyId::from("load"),
            grant_type: "client_credentials".into(),
            client_id: agent.clone(),
            subject: agent.to_string(),
            user_id: None::<UserId>,
            actors: vec![],
            delegation_id: None,
            parent_jti: None,
            family_id: None,
            audience: vec![],
            scopes: vec!["load".into()],
            issued_at: now,
            expires_at: now.plus_seconds(24 * 3600),
            agent_type: AgentType::Autonomous,
            task_id: None,
            max_operations: None,
            expires_on_completion: false,
            intent_description: None,
            intent_sealed: None,
            client_assertion: None,
        }))?;
    }
    Ok(())
}

fn assign_unchecked(
    store: &crate::ledger::Store,
    data_dir: &std::path::Path,
    user_id: String,
    policies_file: &std::path::Path,
) -> Result<(), String> {
    let policies = std::fs::read_to_string(policies_file)
        .map_err(|err| format!("{}: {err}", policies_file.display()))?;
    let (ledger, _) =
        Ledger::open(store, data_dir, LedgerOptions::default()).map_err(|err| err.to_string())?;
    let receipt = ledger
        .submit_blocking(Command::AssignPolicySet(PolicySetAssigned {
            subject: PolicySubject::User {
                user_id: UserId(user_id),
            },
            policies,
            by: Actor::Admin {
                token_id: "writ-internal".into(),
            },
        }))
        .map_err(|err| err.to_string())?;
    println!("assigned seq={}", receipt.seq);
    ledger.close();
    Ok(())
}

fn append_load(
    store: &crate::ledger::Store,
    data_dir: PathBuf,
    count: u64,
    concurrency: u64,
    key_prefix: String,
) -> Result<(), String> {
    let clock = Clock::System;
    let options = LedgerOptions {
        clock: clock.clone(),
        ..LedgerOptions::default()
    };
    let (ledger, report) =
        Ledger::open(store, &data_dir, options).map_err(|err| err.to_string())?;
    println!(
        "opened head={} torn_bytes={}",
        ledger.head().seq,
        report.recovery.torn_bytes
    );
    setup(&ledger, &clock).map_err(|err| err.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| err.to_string())?;
    let ledger = Arc::new(ledger);
    let next = Arc::new(AtomicU64::new(0));
    let failures = runtime.block_on(async {
        let tasks: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                tokio::spawn(submitter(
                    Arc::clone(&ledger),
                    Arc::clone(&next),
                    count,
                    key_prefix.clone(),
                ))
            })
            .collect();
        let mut failures = Vec::new();
        for task in tasks {
            if let Ok(Err(err)) = task.await {
                failures.push(err);
            }
        }
        failures
    });
    drop(runtime);
    if let Ok(ledger) = Arc::try_unwrap(ledger) {
        ledger.close();
    }
    match failures.first() {
        Some(err) => Err(err.clone()),
        None => Ok(()),
    }
}

async fn submitter(
    ledger: Arc<Ledger>,
    next: Arc<AtomicU64>,
    count: u64,
    prefix: String,
) -> Result<(), String> {
    let digest = Digest::of(LOAD_TOKEN.as_bytes());
    loop {
        let index = next.fetch_add(1, Ordering::SeqCst);
        if index >= count {
            return Ok(());
        }
        let key = format!("{prefix}-{index}");
        let command = Command::RecordOperation {
            digest,
            operation: "load".into(),
            resource: None,
            idempotency_key: Some(key.clone()),
            approval: None,
        };
        let receipt = ledger
            .submit(command)
            .await
            .map_err(|err| err.to_string())?;
        // One write per line, so a kill never leaves half an acknowledgement behind.
        let line = format!("ack {key} {}\n", receipt.seq);
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|err| err.to_string())?;
    }
}
