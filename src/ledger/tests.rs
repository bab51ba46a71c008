//! The ledger's behaviour through its public surface: submit commands, read state,
//! reopen the directory, and look at the bytes on disk.
//!
//! What holds for any storage runs on both backends: a test `name(backend)` is run as
//! `name::embedded` and `name::postgres`, the latter on a scratch database of its own.

use std::path::Path;
use std::sync::Arc;

use writ_schemas::*;

use super::datadir::DataDir;
use super::postgres::{Postgres, ScratchDatabase, test_server_url};
use super::storage::{Storage, StorageError};
use super::{Ledger, LedgerError, LedgerOptions, OpenReport, SubmitError};
use crate::clock::Clock;
use crate::decide::{Answer, Command, Refusal};

fn options(clock: &Clock) -> LedgerOptions {
    LedgerOptions {
        clock: clock.clone(),
        snapshot_every_records: 0,
        ..LedgerOptions::default()
    }
}

fn start() -> Timestamp {
    Timestamp::parse("2026-11-23T09:00:00.000000Z").unwrap_or_else(|_| unreachable!())
}

/// Where a test's ledger lives: a data directory, and for PostgreSQL a scratch database.
struct Backend {
    dir: tempfile::TempDir,
    database: Option<ScratchDatabase>,
}

impl Backend {
    fn embedded() -> Backend {
        Backend {
            dir: temp(),
            database: None,
        }
    }

    fn postgres() -> Backend {
        Backend {
            dir: temp(),
            database: Some(scratch_database()),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn open_with(&self, options: LedgerOptions) -> Result<(Ledger, OpenReport), LedgerError> {
        match &self.database {
            None => Ledger::open_embedded(self.path(), options),
            Some(db) => Ledger::open_postgres(&db.url, self.path(), options),
        }
    }

    /// The bare storage, without a ledger on it.
    fn storage(&self) -> Box<dyn Storage> {
        let opened: Result<Box<dyn Storage>, StorageError> = match &self.database {
            None => super::embedded::Embedded::open(
                &DataDir::new(self.path()),
                super::embedded::SEGMENT_BYTES_MAX_DEFAULT,
            )
            .map(|(storage, _)| Box::new(storage) as Box<dyn Storage>),
            Some(db) => Postgres::open(&db.url).map(|s| Box::new(s) as Box<dyn Storage>),
        };
        opened.unwrap_or_else(|err| unreachable!("{err}"))
    }
}

/// Runs each named test, `fn name(backend: Backend)`, on both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn embedded() {
                super::$name(super::Backend::embedded())
            }
            #[test]
            fn postgres() {
                super::$name(super::Backend::postgres())
            }
        }
    )*};
}

on_both_backends!(
    quota_is_exact_under_64_concurrent_submitters_and_survives_reopen,
    idempotency_key_returns_the_first_answer_and_never_counts_twice,
    an_answer_is_durable_and_visible_when_it_arrives,
    a_refused_command_writes_nothing,
    revoking_a_parent_revokes_every_descendant_in_one_append,
    reopening_loads_the_snapshot_and_replays_the_tail,
    periodic_snapshots_are_written_off_the_write_path_and_match_a_replay,
    a_damaged_snapshot_is_skipped_with_a_reason,
    deactivating_a_person_revokes_their_tokens_and_everything_derived,
    revoking_a_delegation_revokes_its_tokens_in_the_same_append,
    after_a_failed_append_nothing_more_is_written_and_every_acknowledged_command_is_durable,
    a_second_writer_on_the_data_directory_is_locked_out,
    the_merkle_tree_follows_every_durable_append_and_reopens_to_the_same_root,
    the_state_as_of_any_record_is_a_replay_to_it_and_leaves_the_live_state_alone,
    records_are_visited_in_order_in_blocks_and_found_by_time,
    shutdown_writes_the_closing_snapshot_while_other_handles_still_hold_the_ledger,
);

fn open(backend: &Backend, clock: &Clock) -> Ledger {
    match backend.open_with(options(clock)) {
        Ok((ledger, _)) => ledger,
        Err(err) => unreachable!("opening {}: {err}", backend.path().display()),
    }
}

/// Registers person `u1` and agent `a1`; the person's id.
fn person_and_agent(ledger: &Ledger) -> UserId {
    let user = UserId::from("u1");
    let register = Command::test_registration(user.clone(), "u1@example.com");
    assert!(submit(ledger, register).is_ok());
    assert!(submit(ledger, agent("a1")).is_ok());
    user
}

fn agent(client_id: &str) -> Command {
    Command::RegisterAgent(AgentRegistered {
        client_id: ClientId::from(client_id),
        name: client_id.into(),
        owner: None,
        scopes: vec!["s".into()],
        grant_types: vec!["client_credentials".into()],
        redirect_uris: vec![],
        token_endpoint_auth_method: "client_secret_basic".into(),
        secret_hash: Some(Digest::of(b"secret")),
        secret_expires_at: None,
        require_consent: false,
        agent_type: AgentType::Autonomous,
        expires_at: None,
        by: Actor::System,
        jwks: None,
    })
}

fn token(jti: &str, parent: Option<&str>, max_operations: Option<u64>, now: Timestamp) -> Command {
    Command::IssueToken(TokenIssued {
        jti: Jti::from(jti),
        digest: Digest::of(jti.as_bytes()),
        kid: KeyId::from("k1"),
        grant_type: "client_credentials".into(),
        client_id: ClientId::from("a1"),
        subject: "a1".into(),
        user_id: None,
        actors: vec![],
        delegation_id: None,
        parent_jti: parent.map(Jti::from),
        family_id: None,
        audience: vec![],
        scopes: vec!["s".into()],
        issued_at: now,
        expires_at: now.plus_seconds(900),
        agent_type: AgentType::Ephemeral,
        task_id: None,
        max_operations,
        expires_on_completion: true,
        intent_description: None,
        intent_sealed: None,
        client_assertion: None,
    })
}

fn operation(jti: &str, key: Option<String>) -> Command {
    Command::RecordOperation {
        digest: Digest::of(jti.as_bytes()),
        operation: "read".into(),
        resource: None,
        idempotency_key: key,
        approval: None,
    }
}

fn submit(ledger: &Ledger, command: Command) -> Result<Answer, SubmitError> {
    ledger
        .submit_blocking(command)
        .map(|receipt| receipt.answer)
}

fn seeded(backend: &Backend, clock: &Clock, max_operations: Option<u64>) -> Ledger {
    let ledger = open(backend, clock);
    assert!(submit(&ledger, agent("a1")).is_ok());
    assert!(submit(&ledger, token("t", None, max_operations, clock.now())).is_ok());
    ledger
}

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|err| unreachable!("{err}"))
}

/// 64 tasks on a two-thread runtime, each submitting `each` operations on token `t` one
/// after another; how many answers `accepted` counted as accepted, and how many not.
fn operations_from_64_submitters(
    ledger: &Arc<Ledger>,
    each: usize,
    accepted: fn(Result<super::Receipt, SubmitError>) -> bool,
) -> (u64, u64) {
    operations_from_64_submitters_over(std::slice::from_ref(ledger), each, accepted)
}

/// `operations_from_64_submitters`, the submitters spread over `ledgers` in turn.
fn operations_from_64_submitters_over(
    ledgers: &[Arc<Ledger>],
    each: usize,
    accepted: fn(Result<super::Receipt, SubmitError>) -> bool,
) -> (u64, u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap_or_else(|e| unreachable!("{e}"));
    runtime.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|task| {
                let ledger = Arc::clone(&ledgers[task % ledgers.len()]);
                tokio::spawn(async move {
                    let (mut yes, mut no) = (0u64, 0u64);
                    for _ in 0..each {
                        if accepted(ledger.submit(operation("t", None)).await) {
                            yes += 1;
                        } else {
                            no += 1;
                        }
                    }
                    (yes, no)
                })
            })
            .collect();
        let mut totals = (0, 0);
        for task in tasks {
            let (yes, no) = task.await.unwrap_or_default();
            totals = (totals.0 + yes, totals.1 + no);
        }
        totals
    })
}

fn quota_is_exact_under_64_concurrent_submitters_and_survives_reopen(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = Arc::new(seeded(&backend, &clock, Some(1000)));
    let (accepted, exhausted) = operations_from_64_submitters(&ledger, 25, |answer| match answer {
        Ok(_) => true,
        Err(SubmitError::Refused(Refusal::QuotaExhausted | Refusal::TokenInactive)) => false,
        Err(other) => unreachable!("{other}"),
    });
    assert_eq!((accepted, exhausted), (1000, 600));
    let ledger = Arc::try_unwrap(ledger).unwrap_or_else(|_| unreachable!("tasks are done"));
    ledger.close();
    let reopened = open(&backend, &clock);
    let used = reopened.read(|s| {
        s.token(&Jti::from("t"))
            .map(|t| (t.operations_used, t.is_active(clock.now())))
    });
    assert_eq!(
        used,
        Some((1000, false)),
        "expires_on_completion revoked it in the last operation's batch"
    );
    assert!(matches!(
        submit(&reopened, operation("t", None)),
        Err(SubmitError::Refused(Refusal::TokenInactive))
    ));
}

fn idempotency_key_returns_the_first_answer_and_never_counts_twice(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = seeded(&backend, &clock, Some(5));
    let first = submit(&ledger, operation("t", Some("k".into())));
    let again = submit(&ledger, operation("t", Some("k".into())));
    assert_eq!(
        first.ok(),
        Some(Answer::Operation {
            operations_remaining: Some(4),
            active: true
        })
    );
    assert_eq!(
        again.ok(),
        Some(Answer::Operation {
            operations_remaining: Some(4),
            active: true
        })
    );
    assert_eq!(
        ledger.read(|s| s.token(&Jti::from("t")).map(|t| t.operations_used)),
        Some(1)
    );
}

fn an_answer_is_durable_and_visible_when_it_arrives(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = seeded(&backend, &clock, None);
    let receipt = ledger
        .submit_blocking(operation("t", None))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(ledger.head().seq, receipt.seq);
    assert_eq!(ledger.read(|s| s.head().seq), receipt.seq);
    let on_disk = ledger.storage().read(receipt.seq, 1).unwrap_or_default();
    assert_eq!(
        on_disk.first().map(|r| r.decode_event().map(|e| e.kind())),
        Some(Ok(EventKind::OperationRecorded))
    );
}

fn shutdown_writes_the_closing_snapshot_while_other_handles_still_hold_the_ledger(
    backend: Backend,
) {
    let clock = Clock::manual(start());
    let ledger = std::sync::Arc::new(seeded(&backend, &clock, None));
    let head = ledger.head().seq;
    // A handle that outlives the shutdown, as an HTTP worker's may: dropping the first
    // handle alone would leave the sequencer running and the snapshot unwritten.
    let other = std::sync::Arc::clone(&ledger);
    ledger.shutdown();
    let snapshots = super::snapshots::list(&DataDir::new(backend.path()).snapshots());
    assert_eq!(snapshots.first().map(|(seq, _)| *seq), Some(head));
    assert!(
        matches!(
            other.submit_blocking(operation("t", None)),
            Err(SubmitError::Unavailable(_))
        ),
        "a stopped ledger refuses commands"
    );
    drop((ledger, other));
}

fn a_refused_command_writes_nothing(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = seeded(&backend, &clock, None);
    let head = ledger.head();
    assert!(matches!(
        submit(&ledger, agent("a1")),
        Err(SubmitError::Refused(Refusal::AgentExists(_)))
    ));
    assert!(matches!(
        submit(&ledger, operation("nope", None)),
        Err(SubmitError::Refused(Refusal::UnknownToken))
    ));
    clock.advance(901);
    assert!(matches!(
        submit(&ledger, operation("t", None)),
        Err(SubmitError::Refused(Refusal::TokenInactive))
    ));
    assert_eq!(ledger.head(), head);
}

fn revoking_a_parent_revokes_every_descendant_in_one_append(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = seeded(&backend, &clock, None);
    let now = clock.now();
    for (jti, parent) in [("c1", "t"), ("c2", "t"), ("g1", "c1")] {
        assert!(submit(&ledger, token(jti, Some(parent), None, now)).is_ok());
    }
    let before = ledger.head().seq;
    let answer = submit(
        &ledger,
        Command::RevokeToken {
            jti: Jti::from("t"),
            by: Actor::System,
        },
    );
    assert_eq!(answer.ok(), Some(Answer::Revoked { tokens: 4 }));
    assert_eq!(ledger.head().seq, before + 4);
    let causes = ledger.read(|s| {
        ["t", "c1", "c2", "g1"].map(|jti| {
            s.token(&Jti::from(jti))
                .map(|t| (t.is_active(now), t.status.clone()))
        })
    });
    assert!(
        causes
            .iter()
            .all(|c| c.as_ref().is_some_and(|(active, _)| !active))
    );
    let g1 = &causes[3];
    assert!(
        matches!(g1, Some((_, writ_projections::TokenStatus::Revoked { cause: RevocationCause::ParentRevoked { parent_jti }, .. })) if parent_jti.as_str() == "c1")
    );
    assert!(matches!(
        submit(&ledger, token("late", Some("c2"), None, now)),
        Err(SubmitError::Refused(Refusal::ParentInactive(_)))
    ));
}

fn reopening_loads_the_snapshot_and_replays_the_tail(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = seeded(&backend, &clock, None);
    for _ in 0..10 {
        assert!(submit(&ledger, operation("t", None)).is_ok());
    }
    ledger.close(); // writes a snapshot at record 12
    let (ledger, report) = backend
        .open_with(options(&clock))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!((report.snapshot_seq, report.replayed), (Some(12), 0));
    drop(ledger);
    // As after a crash: the last session leaves no snapshot of its own.
    let crashy = LedgerOptions {
        snapshot_on_close: false,
        ..options(&clock)
    };
    let (ledger, _) = backend
        .open_with(crashy)
        .unwrap_or_else(|e| unreachable!("{e}"));
    for _ in 0..5 {
        assert!(submit(&ledger, operation("t", None)).is_ok());
    }
    let expected = ledger.read(writ_projections::snapshot::encode);
    drop(ledger);
    let (ledger, report) = backend
        .open_with(options(&clock))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!((report.snapshot_seq, report.replayed), (Some(12), 5));
    assert_eq!(ledger.read(writ_projections::snapshot::encode), expected);
}

fn periodic_snapshots_are_written_off_the_write_path_and_match_a_replay(backend: Backend) {
    let clock = Clock::manual(start());
    let every_ten = LedgerOptions {
        snapshot_every_records: 10,
        snapshot_on_close: false,
        ..options(&clock)
    };
    let (ledger, _) = backend
        .open_with(every_ten)
        .unwrap_or_else(|e| unreachable!("{e}"));
    for n in 0..25 {
        assert!(submit(&ledger, agent(&format!("a{n}"))).is_ok());
    }
    let at_25 = ledger.read(writ_projections::snapshot::encode);
    drop(ledger); // the snapshotter finishes what it was handed before the ledger closes
    let snapshots = DataDir::new(backend.path()).snapshots();
    let seqs: Vec<u64> = super::snapshots::list(&snapshots)
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(seqs, vec![20, 10], "one every ten records, none at close");
    // The follower's snapshot is the state a replay of the first 20 records gives.
    let path = snapshots.join(format!("{:020}.snap", 20));
    let snapshot = super::snapshots::read(&path)
        .unwrap_or_else(|why| unreachable!("{}: {why}", path.display()));
    assert_eq!(snapshot.head().seq, 20);
    let (ledger, report) = backend
        .open_with(options(&clock))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!((report.snapshot_seq, report.replayed), (Some(20), 5));
    assert_eq!(ledger.read(writ_projections::snapshot::encode), at_25);
}

fn a_damaged_snapshot_is_skipped_with_a_reason(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = seeded(&backend, &clock, None);
    let expected = ledger.read(writ_projections::snapshot::encode);
    ledger.close();
    let snapshots = super::snapshots::list(&DataDir::new(backend.path()).snapshots());
    let path = &snapshots[0].1;
    let bytes = std::fs::read(path).unwrap_or_default();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap_or_else(|e| unreachable!("{e}"));
    let (ledger, report) = backend
        .open_with(options(&clock))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(report.snapshot_seq, None);
    assert!(
        report.skipped_snapshots[0].1.contains("truncated"),
        "{:?}",
        report.skipped_snapshots
    );
    assert_eq!(ledger.read(writ_projections::snapshot::encode), expected);
}

fn segment(dir: &Path) -> std::path::PathBuf {
    DataDir::new(dir).ledger().join("00000000000000000001.seg")
}

#[test]
fn a_torn_tail_is_cut_off_and_kept() {
    let backend = Backend::embedded();
    let clock = Clock::manual(start());
    let ledger = seeded(&backend, &clock, None);
    let head = ledger.head();
    drop(ledger);
    let path = segment(backend.path());
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    let whole = bytes.len();
    bytes.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 7]);
    std::fs::write(&path, &bytes).unwrap_or_else(|e| unreachable!("{e}"));
    let (ledger, report) = backend
        .open_with(options(&clock))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(report.recovery.torn_bytes, 13);
    assert_eq!(ledger.head(), head);
    assert_eq!(
        std::fs::metadata(&path).map(|m| m.len() as usize).ok(),
        Some(whole)
    );
    let kept = report.recovery.kept_at.map(std::fs::read);
    assert_eq!(kept.and_then(Result::ok).map(|b| b.len()), Some(13));
    assert!(
        submit(&ledger, operation("t", None)).is_ok(),
        "appends continue after recovery"
    );
}

#[test]
fn damage_further_back_than_one_write_refuses_to_open() {
    let backend = Backend::embedded();
    let clock = Clock::manual(start());
    let ledger = seeded(&backend, &clock, None);
    drop(ledger);
    // Pad the segment with a valid-looking but unchained tail longer than one write could be.
    let path = segment(backend.path());
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    bytes.extend(std::iter::repeat_n(
        0xAB,
        super::embedded::WRITE_BYTES_MAX + 1,
    ));
    std::fs::write(&path, &bytes).unwrap_or_else(|e| unreachable!("{e}"));
    match backend.open_with(options(&clock)) {
        Err(LedgerError::Storage(StorageError::Corrupt(why))) => {
            assert!(
                why.contains("record 3") && why.contains("not a torn write"),
                "{why}"
            );
        }
        other => unreachable!("expected a refusal, got {other:?}"),
    }
}

fn a_second_writer_on_the_data_directory_is_locked_out(backend: Backend) {
    let clock = Clock::manual(start());
    let _ledger = open(&backend, &clock);
    match backend.open_with(options(&clock)) {
        Err(LedgerError::Storage(StorageError::Locked(_))) => {}
        other => unreachable!("expected Locked, got {other:?}"),
    }
}

#[test]
fn a_folder_that_is_not_a_ledger_is_refused_and_left_alone() {
    let backend = Backend::embedded();
    std::fs::write(backend.path().join("notes.txt"), "mine")
        .unwrap_or_else(|e| unreachable!("{e}"));
    let clock = Clock::manual(start());
    match backend.open_with(options(&clock)) {
        Err(LedgerError::Storage(StorageError::NotALedger(why))) => {
            assert!(why.contains("WRIT_LEDGER"), "{why}")
        }
        other => unreachable!("expected NotALedger, got {other:?}"),
    }
    assert!(!backend.path().join("ledger").exists());
}

#[test]
fn segments_rotate_and_reads_cross_them() {
    let backend = Backend::embedded();
    let clock = Clock::manual(start());
    let small = LedgerOptions {
        segment_bytes_max: 4096,
        ..options(&clock)
    };
    let (ledger, _) = backend
        .open_with(small.clone())
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(submit(&ledger, agent("a1")).is_ok());
    assert!(submit(&ledger, token("t", None, None, clock.now())).is_ok());
    for _ in 0..200 {
        assert!(submit(&ledger, operation("t", None)).is_ok());
    }
    let segments =
        super::frame::list_segments(&DataDir::new(backend.path()).ledger()).unwrap_or_default();
    assert!(segments.len() > 5, "{} segments", segments.len());
    let all = ledger.storage().read(1, 1000).unwrap_or_default();
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=202).collect::<Vec<_>>()
    );
    let middle = ledger.storage().read(100, 3).unwrap_or_default();
    assert_eq!(
        middle.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![100, 101, 102]
    );
    let expected = ledger.read(writ_projections::snapshot::encode);
    drop(ledger);
    let (ledger, _) = backend
        .open_with(small)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(ledger.read(writ_projections::snapshot::encode), expected);
}

fn deactivating_a_person_revokes_their_tokens_and_everything_derived(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = open(&backend, &clock);
    let user = person_and_agent(&ledger);
    let now = clock.now();
    for (jti, parent) in [("obo", None), ("sub", Some("obo"))] {
        let Command::IssueToken(mut issued) = token(jti, parent, None, now) else {
            unreachable!()
        };
        issued.user_id = Some(user.clone());
        assert!(submit(&ledger, Command::IssueToken(issued)).is_ok());
    }
    assert!(submit(&ledger, token("m2m", None, None, now)).is_ok());
    let answer = submit(
        &ledger,
        Command::DeactivateUser {
            user_id: user.clone(),
            by: Actor::System,
        },
    );
    assert_eq!(answer.ok(), Some(Answer::Revoked { tokens: 2 }));
    let status = |jti: &str| ledger.read(|s| s.token(&Jti::from(jti)).map(|t| t.status.clone()));
    let revoked = |cause| Some(writ_projections::TokenStatus::Revoked { cause, at: now });
    assert_eq!(
        status("obo"),
        revoked(RevocationCause::UserDeactivated {
            user_id: user.clone()
        })
    );
    assert_eq!(
        status("sub"),
        revoked(RevocationCause::ParentRevoked {
            parent_jti: Jti::from("obo")
        })
    );
    assert_eq!(
        status("m2m"),
        Some(writ_projections::TokenStatus::Live),
        "a token not acting for them stays"
    );
    assert!(matches!(
        submit(
            &ledger,
            Command::DeactivateUser {
                user_id: user.clone(),
                by: Actor::System
            }
        ),
        Err(SubmitError::Refused(Refusal::UserAlready(_, "deactivated")))
    ));
    assert!(
        submit(
            &ledger,
            Command::ReactivateUser {
                user_id: user,
                by: Actor::System
            }
        )
        .is_ok()
    );
    assert_eq!(
        status("obo"),
        revoked(RevocationCause::UserDeactivated {
            user_id: UserId::from("u1")
        }),
        "revocation is final"
    );
}

fn revoking_a_delegation_revokes_its_tokens_in_the_same_append(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = open(&backend, &clock);
    let user = person_and_agent(&ledger);
    let delegation = DelegationId::from("d1");
    let grant = Command::GrantDelegation(DelegationGranted {
        delegation_id: delegation.clone(),
        user_id: user.clone(),
        client_id: ClientId::from("a1"),
        scopes: Some(vec!["s".into()]),
        expires_at: None,
        by: Actor::User {
            user_id: user.clone(),
        },
    });
    assert!(submit(&ledger, grant).is_ok());
    let now = clock.now();
    for (jti, parent) in [("obo", None), ("sub", Some("obo"))] {
        let Command::IssueToken(mut issued) = token(jti, parent, None, now) else {
            unreachable!()
        };
        issued.user_id = Some(user.clone());
        issued.delegation_id = Some(delegation.clone());
        assert!(submit(&ledger, Command::IssueToken(issued)).is_ok());
    }
    assert!(submit(&ledger, token("m2m", None, None, now)).is_ok());
    let before = ledger.head().seq;
    let revoke = Command::RevokeDelegation {
        delegation_id: delegation.clone(),
        by: Actor::User {
            user_id: user.clone(),
        },
    };
    assert_eq!(
        submit(&ledger, revoke.clone()).ok(),
        Some(Answer::Revoked { tokens: 2 })
    );
    assert_eq!(ledger.head().seq, before + 3, "one record each, one append");
    let status = |jti: &str| ledger.read(|s| s.token(&Jti::from(jti)).map(|t| t.status.clone()));
    let revoked = |cause| Some(writ_projections::TokenStatus::Revoked { cause, at: now });
    assert_eq!(
        status("obo"),
        revoked(RevocationCause::DelegationRevoked {
            delegation_id: delegation.clone()
        })
    );
    assert_eq!(
        status("sub"),
        revoked(RevocationCause::ParentRevoked {
            parent_jti: Jti::from("obo")
        })
    );
    assert_eq!(status("m2m"), Some(writ_projections::TokenStatus::Live));
    assert!(ledger.read(|s| s.delegation(&delegation).is_some_and(|d| !d.is_active(now))));
    assert!(matches!(
        submit(&ledger, revoke),
        Err(SubmitError::Refused(Refusal::DelegationAlreadyRevoked(_)))
    ));
}

/// The real embedded storage, made to fail from its `n`th append on, as a full disk
/// would: to see what the write pipeline answers when storage fails under load.
struct FailingFrom {
    inner: Box<dyn Storage>,
    appends_left: std::sync::atomic::AtomicUsize,
}

impl super::storage::Storage for FailingFrom {
    fn append(&self, records: &[Record]) -> Result<(), StorageError> {
        use std::sync::atomic::Ordering;
        let left = self.appends_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(StorageError::io(
                "appending to the segment",
                std::io::Error::other("no space left on device"),
            ));
        }
        self.appends_left.store(left - 1, Ordering::SeqCst);
        self.inner.append(records)
    }

    fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<Record>, StorageError> {
        self.inner.read(from_seq, limit)
    }

    fn head(&self) -> super::Head {
        self.inner.head()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.subscribe()
    }
}

fn after_a_failed_append_nothing_more_is_written_and_every_acknowledged_command_is_durable(
    backend: Backend,
) {
    let clock = Clock::manual(start());
    let storage = Arc::new(FailingFrom {
        inner: backend.storage(),
        appends_left: std::sync::atomic::AtomicUsize::new(6),
    });
    let ledger = Arc::new(Ledger::start(
        storage,
        writ_projections::State::new(),
        super::merkle::MerkleTree::default(),
        None,
        options(&clock),
    ));
    assert!(submit(&ledger, agent("a1")).is_ok());
    assert!(submit(&ledger, token("t", None, None, clock.now())).is_ok());
    let (acknowledged, unavailable) =
        operations_from_64_submitters(&ledger, 20, |answer| match answer {
            Ok(_) => true,
            Err(SubmitError::Unavailable(why)) => {
                assert!(why.contains("no space left"), "{why}");
                false
            }
            Err(other) => unreachable!("{other}"),
        });
    assert_eq!(acknowledged + unavailable, 64 * 20);
    assert!(
        acknowledged > 0 && unavailable > 0,
        "{acknowledged} acknowledged"
    );
    assert!(matches!(
        submit(&ledger, operation("t", None)),
        Err(SubmitError::Unavailable(_))
    ));
    let ledger = Arc::try_unwrap(ledger).unwrap_or_else(|_| unreachable!("tasks are done"));
    ledger.close();
    let reopened = open(&backend, &clock);
    let used = reopened.read(|s| s.token(&Jti::from("t")).map(|t| t.operations_used));
    assert_eq!(
        used,
        Some(acknowledged),
        "exactly the acknowledged operations reached storage"
    );
}

// PostgreSQL only: what the database itself must guarantee.

/// A record of agent `client_id`'s registration after `head`.
fn record_after(head: &super::Head, client_id: &str, ts: Timestamp) -> Record {
    let Command::RegisterAgent(registered) = agent(client_id) else {
        unreachable!()
    };
    let bytes = Event::from(registered)
        .encode()
        .unwrap_or_else(|e| unreachable!("{e}"));
    Record::seal(head.seq + 1, ts, head.hash, bytes)
}

#[test]
fn two_storage_handles_appending_after_the_same_head_never_both_succeed() {
    let db = scratch_database();
    let open = || Postgres::open(&db.url).unwrap_or_else(|e| unreachable!("{e}"));
    let (first, second) = (open(), open());
    let barrier = std::sync::Barrier::new(2);
    let rounds = 40;
    let wins = std::sync::atomic::AtomicUsize::new(0);
    let race = |storage: &Postgres, name: &str| {
        for round in 0..rounds {
            // Both build on the head as it stands once the previous round is settled.
            barrier.wait();
            let head = storage
                .head_in_database()
                .unwrap_or_else(|e| unreachable!("{e}"));
            barrier.wait();
            let record = record_after(&head, &format!("{name}{round}"), start());
            match storage.append(&[record]) {
                Ok(()) => {
                    wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Err(StorageError::Conflict {
                    expected_head,
                    found_head,
                }) => assert_eq!((expected_head, found_head), (head.seq, head.seq + 1)),
                Err(other) => unreachable!("{other}"),
            }
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| race(&first, "a"));
        scope.spawn(|| race(&second, "b"));
    });
    assert_eq!(
        wins.into_inner(),
        rounds,
        "exactly one append per head succeeded"
    );
    let records = first.read(1, 1000).unwrap_or_default();
    let mut chain = Chain::new();
    for record in &records {
        let ts = record.ts.to_string();
        let view = RecordRef {
            seq: record.seq,
            ts: &ts,
            prev_hash: record.prev_hash,
            hash: record.hash,
            event: &record.event,
        };
        assert!(check_record(&view).is_ok() && chain.link(&view).is_ok());
    }
    assert_eq!(chain.seq, rounds as u64, "gap-free and chained");
}

#[test]
fn another_writers_append_is_followed_and_a_lost_race_is_decided_again_on_the_new_head() {
    let backend = Backend::postgres();
    let clock = Clock::manual(start());
    let ledger = seeded(&backend, &clock, None);
    let Some(db) = &backend.database else {
        unreachable!()
    };
    let other = Postgres::open(&db.url).unwrap_or_else(|e| unreachable!("{e}"));
    let head = other
        .head_in_database()
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(
        other
            .append(&[record_after(&head, "elsewhere", clock.now())])
            .is_ok()
    );
    // Whether the follower saw the notification first or the append lost the race, the
    // command is decided on the head that includes the other writer's record.
    assert!(submit(&ledger, agent("here")).is_ok());
    assert_eq!(ledger.read(|s| s.head().seq), head.seq + 2);
    assert!(ledger.read(|s| s.agent(&ClientId::from("elsewhere")).is_some()));
    assert_eq!(ledger.merkle(|tree| tree.size()), head.seq + 2);
    // A command the other writer's record makes wrong is refused, not appended.
    assert!(
        other
            .append(&[record_after(
                &other
                    .head_in_database()
                    .unwrap_or_else(|e| unreachable!("{e}")),
                "taken",
                clock.now()
            )])
            .is_ok()
    );
    assert!(matches!(
        submit(&ledger, agent("taken")),
        Err(SubmitError::Refused(Refusal::AgentExists(_)))
    ));
    ledger.close();
    let reopened = open(&backend, &clock);
    assert_eq!(reopened.read(|s| s.head().seq), head.seq + 3);
}

/// Two ledgers (two nodes' processes) over one database.
fn two_nodes(backend: &Backend, clock: &Clock) -> (Arc<Ledger>, Arc<Ledger>, tempfile::TempDir) {
    let Some(db) = &backend.database else {
        unreachable!()
    };
    let first = seeded(backend, clock, Some(1000));
    let dir = temp();
    let second = Ledger::open_postgres(&db.url, dir.path(), options(clock))
        .unwrap_or_else(|e| unreachable!("{e}"))
        .0;
    (Arc::new(first), Arc::new(second), dir)
}

/// Polls `condition` until it holds or 10 seconds pass.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    condition()
}

#[test]
fn two_nodes_over_one_database_keep_a_quota_exact() {
    let backend = Backend::postgres();
    let clock = Clock::manual(start());
    let (first, second, _dir) = two_nodes(&backend, &clock);
    let ledgers = [Arc::clone(&first), Arc::clone(&second)];
    let (accepted, exhausted) =
        operations_from_64_submitters_over(&ledgers, 25, |answer| match answer {
            Ok(_) => true,
            Err(SubmitError::Refused(Refusal::QuotaExhausted | Refusal::TokenInactive)) => false,
            Err(other) => unreachable!("{other}"),
        });
    assert_eq!((accepted, exhausted), (1000, 600));
    let used =
        |ledger: &Ledger| ledger.read(|s| s.token(&Jti::from("t")).map(|t| t.operations_used));
    assert!(eventually(
        || used(&first) == Some(1000) && used(&second) == Some(1000)
    ));
    let heads = || (first.read(|s| s.head()), second.read(|s| s.head()));
    assert!(
        eventually(|| heads().0 == heads().1),
        "both nodes reach one head"
    );
}

#[test]
fn a_revocation_on_one_node_reaches_the_other_without_it_writing() {
    let backend = Backend::postgres();
    let clock = Clock::manual(start());
    let (first, second, _dir) = two_nodes(&backend, &clock);
    let live = |ledger: &Ledger| {
        ledger.read(|s| {
            s.token(&Jti::from("t"))
                .is_some_and(|t| matches!(t.status, writ_projections::TokenStatus::Live))
        })
    };
    assert!(
        eventually(|| live(&second)),
        "the second node sees the token"
    );
    let revoke = Command::RevokeToken {
        jti: Jti::from("t"),
        by: Actor::System,
    };
    assert!(submit(&second, revoke).is_ok());
    assert!(
        eventually(|| !live(&first)),
        "the first node sees the revocation"
    );
    assert_eq!(first.lag(), 0);
}

#[test]
fn tenants_in_schemas_of_one_database_append_concurrently_on_chains_of_their_own() {
    let db = scratch_database();
    let tenant = |name: &str| {
        Postgres::open(&format!("{}?schema={name}", db.url)).unwrap_or_else(|e| unreachable!("{e}"))
    };
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    assert!(acme.target().ends_with("?schema=acme"), "{}", acme.target());
    let appends = 50;
    let append_all = |storage: &Postgres, name: &str| {
        for n in 0..appends {
            let head = storage.head();
            let record = record_after(&head, &format!("{name}{n}"), start());
            // Each tenant has a head row of its own: no append waits for or loses to the
            // other tenant's.
            assert!(storage.append(&[record]).is_ok(), "{name} {n}");
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| append_all(&acme, "acme"));
        scope.spawn(|| append_all(&globex, "globex"));
    });
    for (storage, name) in [(&acme, "acme"), (&globex, "globex")] {
        let records = storage.read(1, 1000).unwrap_or_default();
        assert_eq!(records.len(), appends, "{name}");
        let mut chain = Chain::new();
        for record in &records {
            let ts = record.ts.to_string();
            let view = RecordRef {
                seq: record.seq,
                ts: &ts,
                prev_hash: record.prev_hash,
                hash: record.hash,
                event: &record.event,
            };
            assert!(check_record(&view).is_ok() && chain.link(&view).is_ok());
            assert!(String::from_utf8_lossy(&record.event).contains(name));
        }
    }
    assert_ne!(acme.head().hash, globex.head().hash, "two chains");
    // The database's default schema holds no ledger of its own.
    assert!(matches!(
        Postgres::open_existing(&db.url),
        Err(StorageError::NotALedger(_))
    ));
    assert!(matches!(
        Postgres::open(&format!("{}?schema=Acme;drop", db.url)),
        Err(StorageError::Unreachable(why)) if why.contains("not a plain schema name")
    ));
}

fn execute(url: &str, sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| unreachable!("{e}"));
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        client.batch_execute(sql).await.map_err(|e| {
            e.as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned())
        })
    })
}

#[test]
fn the_schema_is_migrated_once_and_a_newer_one_is_refused() {
    let db = scratch_database();
    match Postgres::open_existing(&db.url) {
        Err(StorageError::NotALedger(why)) => {
            assert!(why.contains("holds no writ ledger"), "{why}")
        }
        other => unreachable!("expected NotALedger, got {other:?}"),
    }
    for _ in 0..2 {
        let storage = Postgres::open(&db.url).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(storage.head().seq, 0);
    }
    assert!(Postgres::open_existing(&db.url).is_ok());
    assert_eq!(
        execute(&db.url, "UPDATE writ_schema_version SET version = 99"),
        Ok(())
    );
    match Postgres::open(&db.url) {
        Err(StorageError::NotALedger(why)) => {
            assert!(
                why.contains("version 99, newer than this writ knows (1)"),
                "{why}"
            )
        }
        other => unreachable!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn records_in_the_database_are_append_only() {
    let db = scratch_database();
    let storage = Postgres::open(&db.url).unwrap_or_else(|e| unreachable!("{e}"));
    let head = storage.head();
    assert!(storage.append(&[record_after(&head, "a", start())]).is_ok());
    for sql in [
        "UPDATE records SET event = 'x'",
        "DELETE FROM records",
        "TRUNCATE records",
    ] {
        let refused = execute(&db.url, sql);
        assert!(
            refused
                .as_ref()
                .is_err_and(|why| why.contains("append-only")),
            "{sql}: {refused:?}"
        );
    }
    assert_eq!(storage.read(1, 10).map(|r| r.len()).ok(), Some(1));
}

#[test]
fn subscribers_are_woken_by_another_handles_appends_and_read_by_seq() {
    let db = scratch_database();
    let reader = Postgres::open(&db.url).unwrap_or_else(|e| unreachable!("{e}"));
    let writer = Postgres::open(&db.url).unwrap_or_else(|e| unreachable!("{e}"));
    let mut woken = reader.subscribe();
    let mut head = writer.head();
    for n in 0..3 {
        let record = record_after(&head, &format!("a{n}"), start());
        head = super::Head {
            seq: record.seq,
            hash: record.hash,
            ts: Some(record.ts),
        };
        assert!(writer.append(&[record]).is_ok());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| unreachable!("{e}"));
    let seen = runtime.block_on(async {
        // A guard against hanging forever, not a timing assertion.
        let wait = woken.wait_for(|seq| *seq >= 3);
        tokio::time::timeout(std::time::Duration::from_secs(60), wait)
            .await
            .map(|seen| seen.map(|seq| *seq).ok())
    });
    assert_eq!(seen, Ok(Some(3)), "the reader was told of record 3");
    assert_eq!(reader.head(), head);
    let records = reader.read(1, 10).unwrap_or_default();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn bad_urls_and_unreachable_databases_are_refused_with_what_to_do() {
    let refusal = |url: &str| match Postgres::open(url) {
        Err(err) => err.to_string(),
        Ok(_) => unreachable!("{url} opened"),
    };
    let not_a_url = refusal("mysql://root@localhost/writ");
    assert!(not_a_url.contains("postgres://USER"), "{not_a_url}");
    let malformed = refusal("postgres://secret-user:hunter2@127.0.0.1:notaport/writ");
    assert!(
        malformed.contains("invalid PostgreSQL URL") && !malformed.contains("hunter2"),
        "{malformed}"
    );
    // Port 1 on the loopback: nothing listens there.
    let closed = refusal("postgres://postgres:hunter2@127.0.0.1:1/writ");
    assert!(
        closed.contains("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:1/writ")
            && closed.contains("is it running")
            && !closed.contains("hunter2"),
        "{closed}"
    );
    let server = test_server_url();
    let missing = refusal(&super::postgres::url_for_database(
        &server,
        "writ_no_such_db",
    ));
    assert!(
        missing.contains("has no database `writ_no_such_db`") && missing.contains("createdb"),
        "{missing}"
    );
}

#[test]
fn a_data_directory_of_a_postgres_ledger_is_not_taken_for_an_embedded_one() {
    let backend = Backend::postgres();
    let clock = Clock::manual(start());
    drop(seeded(&backend, &clock, None));
    match Ledger::open_embedded(backend.path(), options(&clock)) {
        Err(LedgerError::Storage(StorageError::NotALedger(why))) => {
            assert!(why.contains("pass --store"), "{why}")
        }
        other => unreachable!("expected NotALedger, got {other:?}"),
    }
    assert!(!DataDir::new(backend.path()).ledger().exists());
}

fn the_merkle_tree_follows_every_durable_append_and_reopens_to_the_same_root(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = open(&backend, &clock);
    for i in 0..40 {
        assert!(submit(&ledger, agent(&format!("a{i}"))).is_ok());
    }
    let head = ledger.head();
    let (size, root, last) =
        ledger.merkle(|tree| (tree.size(), tree.root(tree.size()), tree.last_record_hash()));
    assert_eq!((size, last), (head.seq, head.hash));
    assert_eq!(*ledger.subscribe_tree().borrow(), size);
    let hashes: Vec<Hash> = ledger
        .storage()
        .read(1, usize::MAX)
        .unwrap_or_default()
        .iter()
        .map(|record| record.hash)
        .collect();
    assert_eq!(root, Ok(root_of(&hashes)));
    ledger.close();
    let reopened = open(&backend, &clock);
    assert_eq!(reopened.merkle(|tree| tree.root(size)), root);
    assert_eq!(reopened.merkle(|tree| tree.size()), size);
}

/// A ledger of 30 agent registrations a second apart, snapshotted every 7 records (and at
/// close), reopened once every snapshot is written.
fn thirty_seconds(backend: &Backend, clock: &Clock) -> Ledger {
    let every_seven = LedgerOptions {
        snapshot_every_records: 7,
        ..options(clock)
    };
    let (ledger, _) = backend
        .open_with(every_seven)
        .unwrap_or_else(|e| unreachable!("{e}"));
    for i in 0..30 {
        assert!(submit(&ledger, agent(&format!("a{i}"))).is_ok());
        clock.advance(1);
    }
    ledger.close();
    open(backend, clock)
}

fn the_state_as_of_any_record_is_a_replay_to_it_and_leaves_the_live_state_alone(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = thirty_seconds(&backend, &clock);
    let live = ledger.read(writ_projections::snapshot::encode);
    let records = ledger.storage().read(1, usize::MAX).unwrap_or_default();
    let mut replayed = writ_projections::State::new();
    for record in &records {
        let event = record
            .decode_event()
            .unwrap_or_else(|e| unreachable!("{e}"));
        replayed.apply(
            writ_projections::Head {
                seq: record.seq,
                hash: record.hash,
                ts: Some(record.ts),
            },
            &event,
        );
        let rebuilt = ledger
            .state_as_of(record.seq)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            writ_projections::snapshot::encode(&rebuilt.state),
            writ_projections::snapshot::encode(&replayed),
            "as of record {}",
            record.seq
        );
        // Never more than the records since the newest snapshot at or before it.
        assert!(
            rebuilt.replayed < 7 || rebuilt.snapshot_seq == 0,
            "{rebuilt:?}"
        );
    }
    assert_eq!(ledger.read(writ_projections::snapshot::encode), live);
    let past_the_head = ledger.state_as_of(records.len() as u64 + 1);
    assert!(matches!(past_the_head, Err(LedgerError::Replay { .. })));
    assert!(matches!(
        ledger.state_as_of(0),
        Err(LedgerError::Replay { .. })
    ));
}

fn records_are_visited_in_order_in_blocks_and_found_by_time(backend: Backend) {
    let clock = Clock::manual(start());
    let ledger = thirty_seconds(&backend, &clock);
    let storage = ledger.storage();
    let all = storage.read(1, usize::MAX).unwrap_or_default();
    let mut seen = Vec::new();
    let visited = storage.visit_records(3, 28, &mut |block| {
        seen.extend(block.iter().map(|record| record.seq));
        true
    });
    assert!(visited.is_ok());
    assert_eq!(seen, (3..=28).collect::<Vec<u64>>());
    let mut first_block = Vec::new();
    let stopped = storage.visit_records(1, 30, &mut |block| {
        first_block.extend_from_slice(block);
        false
    });
    assert!(stopped.is_ok());
    assert_eq!(first_block, all[..first_block.len()]);
    for record in &all {
        let at = crate::trail::last_seq_at_or_before(&**storage, 30, record.ts);
        assert_eq!(at.ok(), Some(Some(record.seq)));
        let just_before = Timestamp::from_unix_micros(record.ts.unix_micros() - 1)
            .unwrap_or_else(|| unreachable!());
        let before = crate::trail::last_seq_at_or_before(&**storage, 30, just_before);
        assert_eq!(
            before.ok(),
            Some(record.seq.checked_sub(1).filter(|s| *s > 0))
        );
    }
}

/// A fresh database on the test server; the test fails, saying how to start PostgreSQL,
/// if there is none.
fn scratch_database() -> ScratchDatabase {
    ScratchDatabase::for_test().unwrap_or_else(|why| panic!("{why}"))
}
