//! Given events, then state: the folds' behaviour on hand-written sequences.

use writ_schemas::*;

use crate::{Head, State, TokenStatus, audit_entry, snapshot};

fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_800_000_000_000_000 + seconds * 1_000_000)
        .unwrap_or_else(|| unreachable!())
}

fn fold(events: &[Event]) -> State {
    let mut state = State::new();
    for (index, event) in events.iter().enumerate() {
        let seq = index as u64 + 1;
        state.apply(
            Head {
                seq,
                hash: Hash([seq as u8; 32]),
                ts: Some(ts(seq as i64)),
            },
            event,
        );
    }
    state
}

fn issued(
    jti: &str,
    parent: Option<&str>,
    delegation: Option<&str>,
    max_operations: Option<u64>,
) -> Event {
    Event::from(TokenIssued {
        jti: Jti::from(jti),
        digest: Digest::of(jti.as_bytes()),
        kid: KeyId::from("k1"),
        grant_type: "client_credentials".into(),
        client_id: ClientId::from("a1"),
        subject: "u1".into(),
        user_id: Some(UserId::from("u1")),
        actors: vec![],
        delegation_id: delegation.map(DelegationId::from),
        parent_jti: parent.map(Jti::from),
        family_id: None,
        audience: vec![],
        scopes: vec!["s".into()],
        issued_at: ts(0),
        expires_at: ts(900),
        agent_type: AgentType::Ephemeral,
        task_id: None,
        max_operations,
        expires_on_completion: true,
        intent_description: None,
        intent_sealed: None,
        client_assertion: None,
    })
}

fn op(jti: &str, key: Option<&str>) -> Event {
    Event::from(OperationRecorded {
        jti: Jti::from(jti),
        operation: "read".into(),
        resource: None,
        idempotency_key: key.map(str::to_owned),
    })
}

#[test]
fn lineage_walks_every_depth_once() {
    let state = fold(&[
        issued("root", None, Some("d1"), None),
        issued("child", Some("root"), None, None),
        issued("grandchild", Some("child"), None, None),
        issued("sibling", Some("root"), None, None),
        issued("other", None, None, None),
    ]);
    let names = |jtis: Vec<Jti>| jtis.into_iter().map(|j| j.0).collect::<Vec<_>>();
    assert_eq!(
        names(state.lineage(&Jti::from("root"))),
        ["root", "child", "grandchild", "sibling"]
    );
    assert_eq!(
        names(state.tokens_under_delegation(&DelegationId::from("d1"))),
        ["root", "child", "grandchild", "sibling"]
    );
    assert_eq!(
        names(state.lineage(&Jti::from("child"))),
        ["child", "grandchild"]
    );
    assert!(state.lineage(&Jti::from("nope")).is_empty());
}

#[test]
fn operations_count_down_and_remember_idempotency_keys() {
    let state = fold(&[
        issued("t", None, None, Some(3)),
        op("t", Some("k1")),
        op("t", None),
    ]);
    let token = state.token_by_digest(&Digest::of(b"t"));
    assert_eq!(token.map(|t| t.operations_remaining()), Some(Some(1)));
    assert_eq!(token.and_then(|t| t.idempotent_answer("k1")), Some(Some(2)));
    assert_eq!(token.and_then(|t| t.idempotent_answer("k2")), None);
}

#[test]
fn revocation_keeps_its_cause_and_ends_activity() {
    let cause = RevocationCause::ParentRevoked {
        parent_jti: Jti::from("p"),
    };
    let state = fold(&[
        issued("t", None, None, None),
        Event::from(TokenRevoked {
            jti: Jti::from("t"),
            cause: cause.clone(),
        }),
    ]);
    let token = state.token(&Jti::from("t"));
    assert_eq!(token.map(|t| t.is_active(ts(10))), Some(false));
    assert_eq!(
        token.map(|t| t.status.clone()),
        Some(TokenStatus::Revoked { cause, at: ts(2) })
    );
    let live = fold(&[issued("t", None, None, None)]);
    assert_eq!(
        live.token(&Jti::from("t"))
            .map(|t| (t.is_active(ts(899)), t.is_active(ts(900)))),
        Some((true, false))
    );
}

#[test]
fn audit_entry_names_person_agent_chain_and_outcome() {
    let state = fold(&[issued("t", None, None, None)]);
    let head = Head {
        seq: 2,
        hash: Hash([2; 32]),
        ts: Some(ts(2)),
    };
    let entry = audit_entry(&state, head, &op("t", None));
    assert_eq!(entry.user, Some(UserId::from("u1")));
    assert_eq!(entry.agents, vec![ClientId::from("a1")]);
    assert_eq!(
        entry.sentence(),
        format!(
            "user u1, via agent a1, did OperationRecorded on read with token t, at {}, succeeded",
            ts(2)
        )
    );
}

#[test]
fn a_chained_operation_reads_from_the_person_through_each_agent_in_delegation_order() {
    // u1 delegated to a1, which handed on to a2: the token a2 holds has act a2 > a1.
    let Event::TokenIssued(mut chained) = issued("t2", Some("t1"), Some("d1"), None) else {
        unreachable!("issued makes a TokenIssued")
    };
    chained.client_id = ClientId::from("a2");
    chained.actors = vec![ClientId::from("a2"), ClientId::from("a1")];
    let state = fold(&[issued("t1", None, Some("d1"), None), chained.into()]);
    let head = |seq: u64| Head {
        seq,
        hash: Hash([3; 32]),
        ts: Some(ts(3)),
    };
    let entry = audit_entry(&state, head(3), &op("t2", None));
    assert_eq!(
        entry.sentence(),
        format!(
            "user u1, via agent a1 then agent a2, did OperationRecorded on read with token t2, at {}, succeeded",
            ts(3)
        )
    );
    let revoked = Event::from(TokenRevoked {
        jti: Jti::from("t2"),
        cause: RevocationCause::Requested {
            by: Actor::Admin {
                token_id: "adm_1".into(),
            },
        },
    });
    assert_eq!(
        audit_entry(&state, head(3), &revoked).sentence(),
        format!(
            "admin adm_1 for user u1, via agent a1 then agent a2, did TokenRevoked on t2, at {}, revoked (requested)",
            ts(3)
        ),
        "whoever else acted is named before the person"
    );
    let Event::TokenIssued(mut machine) = issued("m", None, None, None) else {
        unreachable!("issued makes a TokenIssued")
    };
    machine.user_id = None;
    let state = fold(&[machine.into()]);
    assert_eq!(
        audit_entry(&state, head(2), &op("m", None)).sentence(),
        format!(
            "agent a1, did OperationRecorded on read with token m, at {}, succeeded",
            ts(3)
        ),
        "an agent acting as itself is named once"
    );
}

#[test]
fn snapshot_refuses_damage_with_a_reason() {
    let bytes = snapshot::encode(&fold(&[issued("t", None, None, None)]));
    assert!(snapshot::decode(&bytes).is_ok());
    assert_eq!(
        snapshot::decode(b"hello, world").err(),
        Some(snapshot::SnapshotError::NotASnapshot)
    );
    assert!(matches!(
        snapshot::decode(&bytes[..bytes.len() - 5]),
        Err(snapshot::SnapshotError::Truncated { .. })
    ));
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    assert_eq!(
        snapshot::decode(&flipped).err(),
        Some(snapshot::SnapshotError::Checksum)
    );
    let mut future = bytes;
    future[11] = 99;
    assert!(matches!(
        snapshot::decode(&future),
        Err(snapshot::SnapshotError::Format { .. })
    ));
}

#[test]
fn signing_keys_of_every_algorithm_survive_a_snapshot_and_name_who_rotated_them() {
    let rotation = |kid: &str, alg, public_key: Option<&str>, jwk, by| {
        Event::from(SigningKeyRotated {
            kid: KeyId::from(kid),
            alg,
            public_key: public_key.map(str::to_owned),
            jwk,
            previous_kid: None,
            by,
        })
    };
    let admin = || Actor::Admin {
        token_id: "adm_1".into(),
    };
    let state = fold(&[
        rotation("k1", SigningAlgorithm::EdDsa, Some("x1"), None, None),
        rotation(
            "k2",
            SigningAlgorithm::Es256,
            None,
            Some(PublicJwk::Ec {
                crv: EcCurve::P256,
                x: "x2".into(),
                y: "y2".into(),
            }),
            Some(admin()),
        ),
        rotation(
            "k3",
            SigningAlgorithm::Rs256,
            None,
            Some(PublicJwk::Rsa {
                n: "n3".into(),
                e: "AQAB".into(),
            }),
            Some(Actor::System),
        ),
    ]);
    let keys = state.signing_keys();
    assert_eq!(
        keys.iter().map(|key| key.alg).collect::<Vec<_>>(),
        SigningAlgorithm::ALL.to_vec()
    );
    let restored =
        snapshot::decode(&snapshot::encode(&state)).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(restored.signing_keys(), keys);
    let head = Head {
        seq: 1,
        hash: Hash([0; 32]),
        ts: None,
    };
    let first = rotation("k1", SigningAlgorithm::EdDsa, Some("x1"), None, None);
    assert_eq!(audit_entry(&state, head, &first).actor, "system");
    let by_admin = rotation(
        "k4",
        SigningAlgorithm::EdDsa,
        Some("x4"),
        None,
        Some(admin()),
    );
    assert_eq!(audit_entry(&state, head, &by_admin).actor, "admin:adm_1");
}

#[test]
fn moments_answer_who_could_act_and_what_was_in_force_at_each_step() {
    let grant = Event::from(DelegationGranted {
        delegation_id: DelegationId::from("d1"),
        user_id: UserId::from("u1"),
        client_id: ClientId::from("a1"),
        scopes: None,
        expires_at: Some(ts(600)),
        by: Actor::System,
    });
    let revoke = Event::from(DelegationRevoked {
        delegation_id: DelegationId::from("d1"),
        by: Actor::System,
    });
    let granted = fold(std::slice::from_ref(&grant));
    let (u1, a1) = (UserId::from("u1"), ClientId::from("a1"));
    assert_eq!(granted.delegations_in_force(ts(1), None, None).count(), 1);
    assert_eq!(
        granted
            .delegations_in_force(ts(1), Some(&u1), Some(&a1))
            .count(),
        1
    );
    assert_eq!(
        granted
            .delegations_in_force(ts(1), None, Some(&ClientId::from("a2")))
            .count(),
        0
    );
    // Lapsed by its own expiry at a later instant, with no record in between.
    assert_eq!(granted.delegations_in_force(ts(600), None, None).count(), 0);

    let issued_state = fold(&[grant.clone(), issued("t", None, Some("d1"), Some(1))]);
    assert_eq!(issued_state.tokens_acting_for(&u1, ts(2)).count(), 1);
    assert_eq!(issued_state.tokens_usable_by_agent(&a1, ts(2)).count(), 1);
    assert_eq!(issued_state.tokens_acting_for(&u1, ts(900)).count(), 0);

    // Its one operation spends the quota: it can no longer act, though not revoked.
    let used = fold(&[
        grant.clone(),
        issued("t", None, Some("d1"), Some(1)),
        op("t", None),
    ]);
    assert_eq!(used.tokens_acting_for(&u1, ts(3)).count(), 0);

    let revoked = fold(&[grant, issued("t", None, Some("d1"), None), revoke]);
    assert_eq!(revoked.delegations_in_force(ts(3), None, None).count(), 0);
}

fn registered(user: &str, email: &str) -> Event {
    Event::from(UserRegistered {
        user_id: UserId::from(user),
        email: Some(email.into()),
        name: Some("Ada Lovelace".into()),
        email_sealed: None,
        email_hash: None,
        name_sealed: None,
        email_skeleton_hash: None,
        by: Actor::System,
    })
}

#[test]
fn erasing_forgets_a_person_s_data_so_no_later_snapshot_holds_it() {
    // An old record with the email in the clear, then a token acting for the person with
    // an intent in the clear: the worst case, since the ledger holds both as text.
    let mut token = issued("j1", None, None, None);
    if let Event::TokenIssued(issued) = &mut token {
        issued.intent_description = Some("write to Ada's accountant".into());
    }
    let before = fold(&[registered("u1", "ada@example.com"), token.clone()]);
    assert!(before.user_by_email("ADA@example.com").is_some());
    let erased = fold(&[
        registered("u1", "ada@example.com"),
        token,
        Event::from(UserErased {
            user_id: UserId::from("u1"),
            by: Actor::System,
        }),
    ]);
    let user = erased.user(&UserId::from("u1")).unwrap();
    assert_eq!(
        (&user.email, &user.name, user.erased, user.active),
        (
            &crate::Personal::Erased,
            &Some(crate::Personal::Erased),
            true,
            false
        )
    );
    assert!(
        erased.user_by_email("ada@example.com").is_none(),
        "the email is free again"
    );
    let token = erased.token(&Jti::from("j1")).unwrap();
    assert_eq!(token.intent_description, Some(crate::Personal::Erased));
    let bytes = snapshot::encode(&erased);
    let holds = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!holds(b"ada@example.com") && !holds(b"Lovelace") && !holds(b"accountant"));
    let before_bytes = snapshot::encode(&before);
    assert!(
        before_bytes.windows(15).any(|w| w == b"ada@example.com"),
        "the check can fail"
    );
}

#[test]
fn a_snapshot_keeps_a_keyed_agent_and_the_assertions_it_spent() {
    let registered = AgentRegistered {
        client_id: ClientId::from("a1"),
        name: "keyed".into(),
        owner: None,
        scopes: vec!["read".into()],
        grant_types: vec!["client_credentials".into()],
        redirect_uris: vec![],
        token_endpoint_auth_method: "private_key_jwt".into(),
        secret_hash: None,
        secret_expires_at: None,
        require_consent: false,
        agent_type: AgentType::Autonomous,
        expires_at: None,
        by: Actor::System,
        // Optional members left out, as a registration usually has them.
        jwks: Some(ClientJwks {
            keys: vec![ClientJwk {
                kty: "OKP".into(),
                kid: None,
                alg: None,
                use_: None,
                crv: Some("Ed25519".into()),
                x: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()),
                y: None,
                n: None,
                e: None,
            }],
        }),
    };
    let Event::TokenIssued(mut token) = issued("t", None, None, None) else {
        unreachable!("issued gives a TokenIssued")
    };
    token.client_id = ClientId::from("a1");
    token.client_assertion = Some(AssertionUsed {
        jti: "asn-1".into(),
        expires_at: ts(120),
    });
    let state = fold(&[registered.into(), token.into()]);
    assert!(state.assertion_used(&ClientId::from("a1"), "asn-1"));
    assert!(!state.assertion_used(&ClientId::from("a2"), "asn-1"));
    let decoded = snapshot::decode(&snapshot::encode(&state));
    assert_eq!(decoded.as_ref().ok(), Some(&state));
}

/// Records from before admin credentials had names still replay: the first nameless one
/// is `initial`, a later one goes by its id; both are admins that never expire. A
/// revocation removes a credential, and the rest survive a snapshot.
#[test]
fn nameless_admin_tokens_of_old_ledgers_become_named_admin_credentials() {
    let old = |id: &str| {
        Event::decode(
            format!(
                r#"{{"data":{{"by":{{"kind":"system"}},"token_hash":"{}","token_id":"{id}"}},"type":"AdminTokenIssued","v":1}}"#,
                Digest::of(id.as_bytes()).to_base64url()
            )
            .as_bytes(),
        )
        .unwrap_or_else(|err| panic!("{err}"))
    };
    let auditor = Event::from(AdminTokenIssued {
        token_id: "adm_c".into(),
        token_hash: Digest::of(b"adm_c"),
        by: Actor::Admin {
            token_id: "adm_a".into(),
        },
        name: Some("audit".into()),
        role: Some(AdminRole::Auditor),
        expires_at: Some(ts(100)),
    });
    let revoked = Event::from(AdminTokenRevoked {
        token_id: "adm_b".into(),
        by: Actor::Admin {
            token_id: "adm_a".into(),
        },
    });
    let state = fold(&[old("adm_a"), old("adm_b"), auditor, revoked]);
    let listed: Vec<(&str, &str, AdminRole, Option<Timestamp>)> = state
        .admin_credentials()
        .into_iter()
        .map(|c| (c.token_id.as_str(), c.name.as_str(), c.role, c.expires_at))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("adm_c", "audit", AdminRole::Auditor, Some(ts(100))),
            ("adm_a", "initial", AdminRole::Admin, None),
        ]
    );
    assert!(state.admin_token_by_hash(&Digest::of(b"adm_b")).is_none());
    let auditor = state.admin_credential("adm_c");
    assert!(auditor.is_some_and(|c| c.is_live(ts(99)) && !c.is_live(ts(100))));
    let restored =
        snapshot::decode(&snapshot::encode(&state)).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(restored.admin_credentials(), state.admin_credentials());
}
