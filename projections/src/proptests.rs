//! Property tests of the folds' determinism, over generated event sequences whose ids are
//! drawn from small pools so that events really refer to one another.

use proptest::prelude::*;
use writ_schemas::*;

use crate::{AuditTrail, Head, State, snapshot};

fn pick<T: Clone + std::fmt::Debug + 'static>(
    pool: &'static [&'static str],
    make: fn(&str) -> T,
) -> impl Strategy<Value = T> {
    prop::sample::select(pool).prop_map(make)
}

const USERS: &[&str] = &["u1", "u2", "u3"];
const AGENTS: &[&str] = &["a1", "a2", "a3"];
const JTIS: &[&str] = &["t1", "t2", "t3", "t4", "t5", "t6"];
const DELEGATIONS: &[&str] = &["d1", "d2"];

fn user() -> impl Strategy<Value = UserId> {
    pick(USERS, |s| UserId::from(s))
}
fn agent() -> impl Strategy<Value = ClientId> {
    pick(AGENTS, |s| ClientId::from(s))
}
fn jti() -> impl Strategy<Value = Jti> {
    pick(JTIS, |s| Jti::from(s))
}
fn delegation() -> impl Strategy<Value = DelegationId> {
    pick(DELEGATIONS, |s| DelegationId::from(s))
}
fn at() -> impl Strategy<Value = Timestamp> {
    (1_700_000_000_000_000i64..1_800_000_000_000_000)
        .prop_map(|m| Timestamp::from_unix_micros(m).unwrap_or_else(|| unreachable!()))
}
fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        Just(Actor::System),
        user().prop_map(|user_id| Actor::User { user_id })
    ]
}

fn token_issued() -> impl Strategy<Value = Event> {
    (
        jti(),
        agent(),
        prop::option::of(user()),
        prop::option::of(delegation()),
        prop::option::of(jti()),
        at(),
        prop::option::of(0u64..5),
        any::<bool>(),
    )
        .prop_map(
            |(
                jti,
                client_id,
                user_id,
                delegation_id,
                parent_jti,
                issued_at,
                max_operations,
                eoc,
            )| {
                Event::from(TokenIssued {
                    digest: Digest::of(jti.as_str().as_bytes()),
                    jti,
                    kid: KeyId::from("k1"),
                    grant_type: "client_credentials".into(),
                    subject: client_id.to_string(),
                    client_id,
                    user_id,
                    actors: vec![],
                    delegation_id,
                    parent_jti,
                    family_id: None,
                    audience: vec![],
                    scopes: vec!["s".into()],
                    issued_at,
                    expires_at: issued_at.plus_seconds(900),
                    agent_type: AgentType::Autonomous,
                    task_id: None,
                    max_operations,
                    expires_on_completion: eoc,
                    intent_description: None,
                    intent_sealed: None,
                    client_assertion: None,
                })
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (user(), "[a-z]{1,8}", actor()).prop_map(|(user_id, name, by)| Event::from(
            UserRegistered {
                email: Some(format!("{name}@{user_id}.test")),
                user_id,
                name: Some(name),
                email_sealed: None,
                email_hash: None,
                name_sealed: None,
                email_skeleton_hash: None,
                by
            }
        )),
        (user(), "[A-Za-z0-9_-]{22,40}", actor()).prop_map(|(user_id, sealed, by)| {
            let sealed = Sealed {
                nonce: "AAAAAAAAAAAAAAAA".into(),
                ciphertext: sealed,
            };
            Event::from(UserRegistered {
                email: None,
                name: None,
                email_hash: Some(Digest::of(sealed.ciphertext.as_bytes())),
                email_skeleton_hash: Some(Digest::of(sealed.nonce.as_bytes())),
                email_sealed: Some(sealed.clone()),
                name_sealed: Some(sealed),
                user_id,
                by,
            })
        }),
        (user(), actor()).prop_map(|(user_id, by)| Event::from(UserErased { user_id, by })),
        (user(), actor()).prop_map(|(user_id, by)| Event::from(UserDeactivated { user_id, by })),
        (user(), actor()).prop_map(|(user_id, by)| Event::from(UserReactivated { user_id, by })),
        (agent(), prop::option::of(user()), prop::option::of(at())).prop_map(
            |(client_id, owner, expires_at)| {
                Event::from(AgentRegistered {
                    name: format!("agent {client_id}"),
                    client_id,
                    owner,
                    scopes: vec!["s".into()],
                    grant_types: vec!["client_credentials".into()],
                    redirect_uris: vec![],
                    token_endpoint_auth_method: "client_secret_basic".into(),
                    secret_hash: Some(Digest::of(b"x")),
                    secret_expires_at: None,
                    require_consent: false,
                    agent_type: AgentType::Autonomous,
                    expires_at,
                    by: Actor::System,
                    jwks: None,
                })
            }
        ),
        (agent(), actor()).prop_map(|(client_id, by)| Event::from(AgentDisabled { client_id, by })),
        (agent(), actor()).prop_map(|(client_id, by)| Event::from(AgentReviewed {
            client_id,
            note: None,
            by
        })),
        (delegation(), user(), agent(), prop::option::of(at())).prop_map(
            |(delegation_id, user_id, client_id, expires_at)| {
                Event::from(DelegationGranted {
                    delegation_id,
                    user_id,
                    client_id,
                    scopes: None,
                    expires_at,
                    by: Actor::System,
                })
            }
        ),
        (delegation(), actor())
            .prop_map(|(delegation_id, by)| Event::from(DelegationRevoked { delegation_id, by })),
        token_issued(),
        token_issued(),
        (jti(), actor()).prop_map(|(jti, by)| Event::from(TokenRevoked {
            jti,
            cause: RevocationCause::Requested { by }
        })),
        jti().prop_map(|jti| Event::from(TokenExhausted { jti })),
        (jti(), prop::option::of("[a-z]{1,3}")).prop_map(|(jti, idempotency_key)| Event::from(
            OperationRecorded {
                jti,
                operation: "op".into(),
                resource: None,
                idempotency_key
            }
        )),
    ]
}

/// Folds `events` from empty, optionally stopping after `upto`.
fn replay(events: &[Event], upto: usize, from: State) -> (State, AuditTrail) {
    let mut state = from;
    let mut trail = AuditTrail::default();
    let mut hash = state.head().hash;
    for event in events.iter().take(upto).skip(state.head().seq as usize) {
        let seq = state.head().seq + 1;
        let ts = Timestamp::from_unix_micros(1_750_000_000_000_000 + seq as i64);
        let bytes = event.encode().unwrap_or_default();
        hash = record_hash(
            seq,
            &hash,
            &ts.map(|t| t.to_string()).unwrap_or_default(),
            &bytes,
        );
        let head = Head { seq, hash, ts };
        trail.record(&state, head, event);
        state.apply(head, event);
    }
    (state, trail)
}

/// Whether the sequencer could have written `event` after `state`: every id it creates is
/// new, and every id it refers to exists. The folds tolerate anything; the trail's claim
/// below is about ledgers writ writes.
fn well_formed(state: &State, event: &Event) -> bool {
    match event {
        Event::TokenIssued(e) => {
            state.token(&e.jti).is_none()
                && e.parent_jti
                    .as_ref()
                    .is_none_or(|p| state.token(p).is_some())
                && e.delegation_id
                    .as_ref()
                    .is_none_or(|d| state.delegation(d).is_some())
        }
        Event::TokenRevoked(e) => state.token(&e.jti).is_some(),
        Event::TokenExhausted(e) => state.token(&e.jti).is_some(),
        Event::OperationRecorded(e) => state.token(&e.jti).is_some(),
        Event::DelegationGranted(e) => state.delegation(&e.delegation_id).is_none(),
        Event::DelegationRevoked(e) => state.delegation(&e.delegation_id).is_some(),
        Event::UserRegistered(e) => state.user(&e.user_id).is_none(),
        Event::AgentRegistered(e) => state.agent(&e.client_id).is_none(),
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_trail_reads_the_same_against_any_later_state(events in prop::collection::vec(event(), 0..120)) {
        let mut kept = Vec::new();
        let mut state = State::new();
        for event in events {
            if well_formed(&state, &event) {
                let head = Head { seq: state.head().seq + 1, ..Head::default() };
                state.apply(head, &event);
                kept.push(event);
            }
        }
        let (last, trail) = replay(&kept, kept.len(), State::new());
        for (entry, event) in trail.entries.iter().zip(&kept) {
            let head = Head { seq: entry.seq, hash: entry.hash, ts: Some(entry.ts) };
            prop_assert_eq!(entry, &crate::audit_entry(&last, head, event));
        }
    }

    #[test]
    fn replaying_twice_gives_byte_identical_snapshots(events in prop::collection::vec(event(), 0..120)) {
        let (first, first_trail) = replay(&events, events.len(), State::new());
        let (second, second_trail) = replay(&events, events.len(), State::new());
        prop_assert_eq!(snapshot::encode(&first), snapshot::encode(&second));
        prop_assert_eq!(first_trail, second_trail);
    }

    #[test]
    fn snapshot_plus_tail_equals_full_replay(events in prop::collection::vec(event(), 1..120), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(events.len() + 1);
        let (full, _) = replay(&events, events.len(), State::new());
        let (partial, _) = replay(&events, cut, State::new());
        let restored = snapshot::decode(&snapshot::encode(&partial));
        prop_assert_eq!(restored.as_ref(), Ok(&partial));
        let (resumed, _) = replay(&events, events.len(), restored.unwrap_or_default());
        prop_assert_eq!(snapshot::encode(&resumed), snapshot::encode(&full));
    }
}
