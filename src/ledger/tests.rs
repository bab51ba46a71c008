//! The ledger's behaviour through its public surface: submit commands, read state,
//! reopen the directory, and look at the bytes on disk.

use std::path::Path;
use std::sync::Arc;

use writ_schemas::*;

use super::datadir::DataDir;
use super::storage::StorageError;
use super::{Ledger, LedgerError, LedgerOptions, SubmitError};
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

fn open(dir: &Path, clock: &Clock) -> Ledger {
    match Ledger::open_embedded(dir, options(clock)) {
        Ok((ledger, _)) => ledger,
        Err(err) => unreachable!("opening {}: {err}", dir.display()),
    }
}

/// Registers person `u1` and agent `a1`; the person's id.
fn person_and_agent(ledger: &Ledger) -> UserId {
    let user = UserId::from("u1");
    let register = Command::RegisterUser {
        user_id: user.clone(),
        email: "u1@example.com".into(),
        name: None,
        by: Actor::System,
    };
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
        require_consent: false,
        agent_type: AgentType::Autonomous,
        expires_at: None,
        by: Actor::System,
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
    })
}

fn operation(jti: &str, key: Option<String>) -> Command {
    Command::RecordOperation {
        digest: Digest::of(jti.as_bytes()),
        operation: "read".into(),
        resource: None,
        idempotency_key: key,
    }
}

fn submit(ledger: &Ledger, command: Command) -> Result<Answer, SubmitError> {
    ledger
        .submit_blocking(command)
        .map(|receipt| receipt.answer)
}

fn seeded(dir: &Path, clock: &Clock, max_operations: Option<u64>) -> Ledger {
    let ledger = open(dir, clock);
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap_or_else(|e| unreachable!("{e}"));
    runtime.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let ledger = Arc::clone(ledger);
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

#[test]
fn quota_is_exact_under_64_concurrent_submitters_and_survives_reopen() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = Arc::new(seeded(dir.path(), &clock, Some(1000)));
    let (accepted, exhausted) = operations_from_64_submitters(&ledger, 25, |answer| match answer {
        Ok(_) => true,
        Err(SubmitError::Refused(Refusal::QuotaExhausted | Refusal::TokenInactive)) => false,
        Err(other) => unreachable!("{other}"),
    });
    assert_eq!((accepted, exhausted), (1000, 600));
    let ledger = Arc::try_unwrap(ledger).unwrap_or_else(|_| unreachable!("tasks are done"));
    ledger.close();
    let reopened = open(dir.path(), &clock);
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

#[test]
fn idempotency_key_returns_the_first_answer_and_never_counts_twice() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = seeded(dir.path(), &clock, Some(5));
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

#[test]
fn an_answer_is_durable_and_visible_when_it_arrives() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = seeded(dir.path(), &clock, None);
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

#[test]
fn a_refused_command_writes_nothing() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = seeded(dir.path(), &clock, None);
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

#[test]
fn revoking_a_parent_revokes_every_descendant_in_one_append() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = seeded(dir.path(), &clock, None);
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

#[test]
fn reopening_loads_the_snapshot_and_replays_the_tail() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = seeded(dir.path(), &clock, None);
    for _ in 0..10 {
        assert!(submit(&ledger, operation("t", None)).is_ok());
    }
    ledger.close(); // writes a snapshot at record 12
    let (ledger, report) =
        Ledger::open_embedded(dir.path(), options(&clock)).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!((report.snapshot_seq, report.replayed), (Some(12), 0));
    drop(ledger);
    // As after a crash: the last session leaves no snapshot of its own.
    let crashy = LedgerOptions {
        snapshot_on_close: false,
        ..options(&clock)
    };
    let (ledger, _) =
        Ledger::open_embedded(dir.path(), crashy).unwrap_or_else(|e| unreachable!("{e}"));
    for _ in 0..5 {
        assert!(submit(&ledger, operation("t", None)).is_ok());
    }
    let expected = ledger.read(writ_projections::snapshot::encode);
    drop(ledger);
    let (ledger, report) =
        Ledger::open_embedded(dir.path(), options(&clock)).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!((report.snapshot_seq, report.replayed), (Some(12), 5));
    assert_eq!(ledger.read(writ_projections::snapshot::encode), expected);
}

#[test]
fn periodic_snapshots_are_written_off_the_write_path_and_match_a_replay() {
    let dir = temp();
    let clock = Clock::manual(start());
    let every_ten = LedgerOptions {
        snapshot_every_records: 10,
        snapshot_on_close: false,
        ..options(&clock)
    };
    let (ledger, _) =
        Ledger::open_embedded(dir.path(), every_ten).unwrap_or_else(|e| unreachable!("{e}"));
    for n in 0..25 {
        assert!(submit(&ledger, agent(&format!("a{n}"))).is_ok());
    }
    let at_25 = ledger.read(writ_projections::snapshot::encode);
    drop(ledger); // the snapshotter finishes what it was handed before the ledger closes
    let snapshots = DataDir::new(dir.path()).snapshots();
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
    let (ledger, report) =
        Ledger::open_embedded(dir.path(), options(&clock)).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!((report.snapshot_seq, report.replayed), (Some(20), 5));
    assert_eq!(ledger.read(writ_projections::snapshot::encode), at_25);
}

#[test]
fn a_damaged_snapshot_is_skipped_with_a_reason() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = seeded(dir.path(), &clock, None);
    let expected = ledger.read(writ_projections::snapshot::encode);
    ledger.close();
    let snapshots = super::snapshots::list(&DataDir::new(dir.path()).snapshots());
    let path = &snapshots[0].1;
    let bytes = std::fs::read(path).unwrap_or_default();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap_or_else(|e| unreachable!("{e}"));
    let (ledger, report) =
        Ledger::open_embedded(dir.path(), options(&clock)).unwrap_or_else(|e| unreachable!("{e}"));
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
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = seeded(dir.path(), &clock, None);
    let head = ledger.head();
    drop(ledger);
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    let whole = bytes.len();
    bytes.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 3, 7]);
    std::fs::write(&path, &bytes).unwrap_or_else(|e| unreachable!("{e}"));
    let (ledger, report) =
        Ledger::open_embedded(dir.path(), options(&clock)).unwrap_or_else(|e| unreachable!("{e}"));
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
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = seeded(dir.path(), &clock, None);
    drop(ledger);
    // Pad the segment with a valid-looking but unchained tail longer than one write could be.
    let path = segment(dir.path());
    let mut bytes = std::fs::read(&path).unwrap_or_default();
    bytes.extend(std::iter::repeat_n(
        0xAB,
        super::embedded::WRITE_BYTES_MAX + 1,
    ));
    std::fs::write(&path, &bytes).unwrap_or_else(|e| unreachable!("{e}"));
    match Ledger::open_embedded(dir.path(), options(&clock)) {
        Err(LedgerError::Storage(StorageError::Corrupt(why))) => {
            assert!(
                why.contains("record 3") && why.contains("not a torn write"),
                "{why}"
            );
        }
        other => unreachable!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_second_writer_is_locked_out() {
    let dir = temp();
    let clock = Clock::manual(start());
    let _ledger = open(dir.path(), &clock);
    match Ledger::open_embedded(dir.path(), options(&clock)) {
        Err(LedgerError::Storage(StorageError::Locked(_))) => {}
        other => unreachable!("expected Locked, got {other:?}"),
    }
}

#[test]
fn a_folder_that_is_not_a_ledger_is_refused_and_left_alone() {
    let dir = temp();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap_or_else(|e| unreachable!("{e}"));
    let clock = Clock::manual(start());
    match Ledger::open_embedded(dir.path(), options(&clock)) {
        Err(LedgerError::Storage(StorageError::NotALedger(why))) => {
            assert!(why.contains("WRIT_LEDGER"), "{why}")
        }
        other => unreachable!("expected NotALedger, got {other:?}"),
    }
    assert!(!dir.path().join("ledger").exists());
}

#[test]
fn segments_rotate_and_reads_cross_them() {
    let dir = temp();
    let clock = Clock::manual(start());
    let small = LedgerOptions {
        segment_bytes_max: 4096,
        ..options(&clock)
    };
    let (ledger, _) =
        Ledger::open_embedded(dir.path(), small.clone()).unwrap_or_else(|e| unreachable!("{e}"));
    assert!(submit(&ledger, agent("a1")).is_ok());
    assert!(submit(&ledger, token("t", None, None, clock.now())).is_ok());
    for _ in 0..200 {
        assert!(submit(&ledger, operation("t", None)).is_ok());
    }
    let segments =
        super::frame::list_segments(&DataDir::new(dir.path()).ledger()).unwrap_or_default();
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
    let (ledger, _) =
        Ledger::open_embedded(dir.path(), small).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(ledger.read(writ_projections::snapshot::encode), expected);
}

#[test]
fn deactivating_a_person_revokes_their_tokens_and_everything_derived() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = open(dir.path(), &clock);
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

#[test]
fn revoking_a_delegation_revokes_its_tokens_in_the_same_append() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = open(dir.path(), &clock);
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
    inner: super::embedded::Embedded,
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

#[test]
fn after_a_failed_append_nothing_more_is_written_and_every_acknowledged_command_is_durable() {
    let dir = temp();
    let clock = Clock::manual(start());
    let (storage, _) = super::embedded::Embedded::open(
        &DataDir::new(dir.path()),
        super::embedded::SEGMENT_BYTES_MAX_DEFAULT,
    )
    .unwrap_or_else(|err| unreachable!("{err}"));
    let storage = Arc::new(FailingFrom {
        inner: storage,
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
    let reopened = open(dir.path(), &clock);
    let used = reopened.read(|s| s.token(&Jti::from("t")).map(|t| t.operations_used));
    assert_eq!(
        used,
        Some(acknowledged),
        "exactly the acknowledged operations reached storage"
    );
}

#[test]
fn the_merkle_tree_follows_every_durable_append_and_reopens_to_the_same_root() {
    let dir = temp();
    let clock = Clock::manual(start());
    let ledger = open(dir.path(), &clock);
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
    let reopened = open(dir.path(), &clock);
    assert_eq!(reopened.merkle(|tree| tree.root(size)), root);
    assert_eq!(reopened.merkle(|tree| tree.size()), size);
}
