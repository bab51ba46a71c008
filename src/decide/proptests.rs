//! Property test of cascade revocation, through the path the sequencer takes: `decide`
//! each command against the state, fold what it records with `State::apply`.
//!
//! For random trees of delegations, on-behalf-of tokens, people's own tokens, tokens
//! derived from them down chains of distinct agents, and plain M2M tokens, one random
//! revocation (a token, a delegation, a person, an agent) must leave exactly the tokens
//! it reaches inactive, and each with the cause that reached it: its own when it was hit
//! directly and its parent was not, else its parent's revocation.

use proptest::prelude::*;
use writ_projections::{Head, State, TokenStatus};
use writ_schemas::{
    Actor, AgentRegistered, AgentType, ClientId, DelegationGranted, DelegationId, Digest, Hash,
    Jti, KeyId, RevocationCause, Timestamp, TokenIssued, UserId,
};

use super::{Command, DELEGATION_DEPTH_DEFAULT, decide};

/// How one token comes to be; indices are taken modulo what exists when it is built.
#[derive(Debug, Clone)]
enum Spec {
    /// An agent's token for a person, under one of the delegations.
    OnBehalf { delegation: usize },
    /// A person's own token, addressed to an agent.
    Own { person: usize, agent: usize },
    /// A token exchanged from an earlier one, held by a further agent.
    Derived { parent: usize, agent: usize },
    /// An agent acting as itself.
    Machine { agent: usize },
}

#[derive(Debug, Clone)]
enum Revocation {
    Token(usize),
    Delegation(usize),
    Person(usize),
    Agent(usize),
}

#[derive(Debug, Clone)]
struct Plan {
    people: usize,
    agents: usize,
    /// (person, agent) of each delegation.
    delegations: Vec<(usize, usize)>,
    tokens: Vec<Spec>,
    revocation: Revocation,
}

fn root_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        any::<usize>().prop_map(|delegation| Spec::OnBehalf { delegation }),
        (any::<usize>(), any::<usize>()).prop_map(|(person, agent)| Spec::Own { person, agent }),
        any::<usize>().prop_map(|agent| Spec::Machine { agent }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        1 => root_spec(),
        2 => (any::<usize>(), any::<usize>())
            .prop_map(|(parent, agent)| Spec::Derived { parent, agent }),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    let revocation = prop_oneof![
        any::<usize>().prop_map(Revocation::Token),
        any::<usize>().prop_map(Revocation::Delegation),
        any::<usize>().prop_map(Revocation::Person),
        any::<usize>().prop_map(Revocation::Agent),
    ];
    (
        1..=3usize,
        // One more agent than the default depth, so that chains reach the ceiling.
        2..=(DELEGATION_DEPTH_DEFAULT as usize + 1),
        prop::collection::vec((any::<usize>(), any::<usize>()), 1..=4),
        root_spec(),
        prop::collection::vec(spec(), 0..16),
        revocation,
    )
        .prop_map(|(people, agents, delegations, first, rest, revocation)| {
            let delegations = delegations
                .into_iter()
                .map(|(p, a)| (p % people, a % agents))
                .collect();
            let mut tokens = vec![first];
            tokens.extend(rest);
            Plan {
                people,
                agents,
                delegations,
                tokens,
                revocation,
            }
        })
}

fn at() -> Timestamp {
    Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap_or_else(|| unreachable!())
}

fn person_id(n: usize) -> UserId {
    UserId::from(format!("p{n}").as_str())
}

fn agent_id(n: usize) -> ClientId {
    ClientId::from(format!("a{n}").as_str())
}

fn delegation_id(n: usize) -> DelegationId {
    DelegationId::from(format!("d{n}").as_str())
}

/// A built token: what the expectation needs to know about it.
#[derive(Debug, Clone)]
struct Built {
    jti: Jti,
    holder: ClientId,
    user: Option<UserId>,
    actors: Vec<ClientId>,
    delegation: Option<usize>,
    parent: Option<usize>,
}

impl Built {
    fn command(&self, built: &[Built]) -> Command {
        Command::IssueToken(TokenIssued {
            jti: self.jti.clone(),
            digest: Digest::of(self.jti.as_str().as_bytes()),
            kid: KeyId::from("k1"),
            grant_type: "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            client_id: self.holder.clone(),
            subject: self
                .user
                .as_ref()
                .map_or_else(|| self.holder.to_string(), ToString::to_string),
            user_id: self.user.clone(),
            actors: self.actors.clone(),
            delegation_id: self.delegation.map(delegation_id),
            parent_jti: self.parent.map(|p| built[p].jti.clone()),
            family_id: None,
            audience: vec![],
            scopes: vec!["files:read".into()],
            issued_at: at(),
            expires_at: at().plus_seconds(900),
            agent_type: AgentType::Autonomous,
            task_id: None,
            max_operations: None,
            expires_on_completion: false,
            intent_description: None,
            intent_sealed: None,
            client_assertion: None,
        })
    }
}

/// The token a spec describes, given those built before it; none when the spec cannot
/// be honoured (deriving from a machine token, a chain with no agent left to add, a
/// person with no delegation to derive under).
fn build(plan: &Plan, spec: &Spec, built: &[Built]) -> Option<Built> {
    let jti = Jti::from(format!("t{}", built.len()).as_str());
    match *spec {
        Spec::OnBehalf { delegation } => {
            let d = delegation % plan.delegations.len();
            let (person, agent) = plan.delegations[d];
            Some(Built {
                jti,
                holder: agent_id(agent),
                user: Some(person_id(person)),
                actors: vec![agent_id(agent)],
                delegation: Some(d),
                parent: None,
            })
        }
        Spec::Own { person, agent } => Some(Built {
            jti,
            holder: agent_id(agent % plan.agents),
            user: Some(person_id(person % plan.people)),
            actors: vec![],
            delegation: None,
            parent: None,
        }),
        Spec::Machine { agent } => Some(Built {
            jti,
            holder: agent_id(agent % plan.agents),
            user: None,
            actors: vec![],
            delegation: None,
            parent: None,
        }),
        Spec::Derived { parent, agent } => {
            if built.is_empty() {
                return None;
            }
            let p = parent % built.len();
            let from = &built[p];
            let user = from.user.clone()?;
            let (holder, delegation) = if from.actors.is_empty() {
                // A person's own token: exchanged by an agent they delegated to.
                let theirs: Vec<usize> = (0..plan.delegations.len())
                    .filter(|d| person_id(plan.delegations[*d].0) == user)
                    .collect();
                let d = *theirs.get(agent % theirs.len().max(1))?;
                (agent_id(plan.delegations[d].1), d)
            } else {
                if from.actors.len() >= DELEGATION_DEPTH_DEFAULT as usize {
                    return None;
                }
                let free: Vec<ClientId> = (0..plan.agents)
                    .map(agent_id)
                    .filter(|a| !from.actors.contains(a))
                    .collect();
                let holder = free.get(agent % free.len().max(1))?.clone();
                (holder, from.delegation?)
            };
            let mut actors = vec![holder.clone()];
            actors.extend(from.actors.iter().cloned());
            Some(Built {
                jti,
                holder,
                user: Some(user),
                actors,
                delegation: Some(delegation),
                parent: Some(p),
            })
        }
    }
}

/// Decides `command` and folds its events into `state`; a refusal is returned.
fn run(state: &mut State, command: &Command) -> Result<(), String> {
    let (events, _) = decide(state, command, at()).map_err(|r| format!("{command:?}: {r}"))?;
    for event in events {
        let head = Head {
            seq: state.head().seq + 1,
            hash: Hash([7; 32]),
            ts: Some(at()),
        };
        state.apply(head, &event);
    }
    Ok(())
}

fn setup_commands(plan: &Plan) -> Vec<Command> {
    let mut commands = Vec::new();
    for p in 0..plan.people {
        commands.push(Command::test_registration(
            person_id(p),
            &format!("p{p}@example.com"),
        ));
    }
    for a in 0..plan.agents {
        commands.push(Command::RegisterAgent(AgentRegistered {
            client_id: agent_id(a),
            name: format!("agent {a}"),
            owner: None,
            scopes: vec!["files:read".into()],
            grant_types: vec!["client_credentials".into()],
            redirect_uris: vec![],
            token_endpoint_auth_method: "client_secret_basic".into(),
            secret_hash: Some(Digest::of(format!("secret {a}").as_bytes())),
            secret_expires_at: None,
            require_consent: false,
            agent_type: AgentType::Autonomous,
            expires_at: None,
            by: Actor::System,
            jwks: None,
        }));
    }
    for (d, (p, a)) in plan.delegations.iter().enumerate() {
        commands.push(Command::GrantDelegation(DelegationGranted {
            delegation_id: delegation_id(d),
            user_id: person_id(*p),
            client_id: agent_id(*a),
            scopes: None,
            expires_at: None,
            by: Actor::User {
                user_id: person_id(*p),
            },
        }));
    }
    commands
}

/// The revocation command, and the cause a token it hits directly records (if it does).
fn revocation(
    plan: &Plan,
    built: &[Built],
) -> (Command, impl Fn(&Built) -> Option<RevocationCause>) {
    let admin = Actor::Admin {
        token_id: "adm_1".into(),
    };
    enum Hit {
        Token(Jti),
        Delegation(usize),
        Person(UserId),
        Agent(ClientId),
    }
    let (command, hit) = match plan.revocation {
        Revocation::Token(n) => {
            let jti = built[n % built.len()].jti.clone();
            let command = Command::RevokeToken {
                jti: jti.clone(),
                by: admin.clone(),
            };
            (command, Hit::Token(jti))
        }
        Revocation::Delegation(n) => {
            let d = n % plan.delegations.len();
            let command = Command::RevokeDelegation {
                delegation_id: delegation_id(d),
                by: Actor::User {
                    user_id: person_id(plan.delegations[d].0),
                },
            };
            (command, Hit::Delegation(d))
        }
        Revocation::Person(n) => {
            // Someone tokens act for, when anyone has one.
            let mut acted_for: Vec<&UserId> =
                built.iter().filter_map(|t| t.user.as_ref()).collect();
            acted_for.dedup();
            let user_id = match acted_for.as_slice() {
                [] => person_id(n % plan.people),
                some => some[n % some.len()].clone(),
            };
            let command = Command::DeactivateUser {
                user_id: user_id.clone(),
                by: admin.clone(),
            };
            (command, Hit::Person(user_id))
        }
        Revocation::Agent(n) => {
            // An agent that holds or acts in some token: disabling an idle one proves little.
            let mut involved: Vec<&ClientId> = built
                .iter()
                .flat_map(|t| std::iter::once(&t.holder).chain(&t.actors))
                .collect();
            involved.sort();
            involved.dedup();
            let client_id = involved[n % involved.len()].clone();
            let command = Command::DisableAgent {
                client_id: client_id.clone(),
                by: admin.clone(),
            };
            (command, Hit::Agent(client_id))
        }
    };
    let direct = move |token: &Built| match &hit {
        Hit::Token(jti) => {
            (token.jti == *jti).then(|| RevocationCause::Requested { by: admin.clone() })
        }
        Hit::Delegation(d) => {
            (token.delegation == Some(*d)).then(|| RevocationCause::DelegationRevoked {
                delegation_id: delegation_id(*d),
            })
        }
        Hit::Person(user_id) => {
            (token.user.as_ref() == Some(user_id)).then(|| RevocationCause::UserDeactivated {
                user_id: user_id.clone(),
            })
        }
        Hit::Agent(client_id) => (token.holder == *client_id || token.actors.contains(client_id))
            .then(|| RevocationCause::AgentDisabled {
                client_id: client_id.clone(),
            }),
    };
    (command, direct)
}

/// What each token should be after the revocation: `None` live, else revoked for that
/// cause. Tokens come in issuance order, so a parent's verdict is known before its
/// children's.
fn expected(
    built: &[Built],
    direct: impl Fn(&Built) -> Option<RevocationCause>,
) -> Vec<Option<RevocationCause>> {
    let mut verdicts: Vec<Option<RevocationCause>> = Vec::with_capacity(built.len());
    for token in built {
        let parent_revoked = token.parent.filter(|p| verdicts[*p].is_some());
        let parent_hit_directly = token.parent.is_some_and(|p| direct(&built[p]).is_some());
        let verdict = match (direct(token), parent_revoked) {
            (Some(cause), _) if !parent_hit_directly => Some(cause),
            (_, Some(p)) => Some(RevocationCause::ParentRevoked {
                parent_jti: built[p].jti.clone(),
            }),
            (cause, None) => cause,
        };
        verdicts.push(verdict);
    }
    verdicts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_revocation_ends_exactly_what_it_reaches_and_says_why(plan in plan()) {
        let mut state = State::new();
        for command in setup_commands(&plan) {
            run(&mut state, &command).map_err(TestCaseError::fail)?;
        }
        let mut built: Vec<Built> = Vec::new();
        for spec in &plan.tokens {
            if let Some(token) = build(&plan, spec, &built) {
                built.push(token);
                let command = built[built.len() - 1].command(&built);
                run(&mut state, &command).map_err(TestCaseError::fail)?;
            }
        }
        for token in &built {
            prop_assert!(state.token(&token.jti).is_some_and(|t| t.is_active(at())));
        }
        let (command, direct) = revocation(&plan, &built);
        run(&mut state, &command).map_err(TestCaseError::fail)?;
        for (token, verdict) in built.iter().zip(expected(&built, direct)) {
            let recorded = state.token(&token.jti).map(|t| (t.is_active(at()), t.status.clone()));
            let wanted = match verdict {
                None => (true, TokenStatus::Live),
                Some(cause) => (false, TokenStatus::Revoked { cause, at: at() }),
            };
            prop_assert_eq!(recorded, Some(wanted), "token {:?} after {:?}", token, command);
        }
    }
}
