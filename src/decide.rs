//! Commands and the decisions they lead to: `decide(&state, command, now)` is a pure
//! function from the current state to the events that record the outcome, or a refusal.
//!
//! Architecture Invariant: nothing here reads a clock, draws randomness or does I/O. Ids,
//! secrets' hashes and token digests arrive in the command; time arrives as `now`. The
//! sequencer can therefore replay a run decision for decision.

use writ_projections::{State, TokenStatus};
use writ_schemas::{
    Actor, AdminTokenIssued, AgentDisabled, AgentEnabled, AgentIdentitySet, AgentPolicySet,
    AgentRegistered, AgentReviewed, AgentSecretRotated, ClientId, Digest, Event, Jti,
    OperationRecorded, RevocationCause, SigningKeyRotated, Timestamp, TokenExhausted, TokenIssued,
    TokenRevoked, UserDeactivated, UserId, UserReactivated, UserRegistered,
};

/// Something asked of the ledger.
#[derive(Debug, Clone)]
pub enum Command {
    /// Register a person.
    RegisterUser {
        /// Their new id.
        user_id: UserId,
        /// Their email (unique, case-insensitively).
        email: String,
        /// Their display name.
        name: Option<String>,
        /// Who asks.
        by: Actor,
    },
    /// Deactivate a person: their tokens, and everything derived from them, are revoked.
    DeactivateUser {
        /// The person.
        user_id: UserId,
        /// Who asks.
        by: Actor,
    },
    /// Reactivate a deactivated person (their revoked tokens stay revoked).
    ReactivateUser {
        /// The person.
        user_id: UserId,
        /// Who asks.
        by: Actor,
    },
    /// Record a new admin token (its keyed hash; the token was shown once).
    IssueAdminToken {
        /// Its id.
        token_id: String,
        /// Its keyed hash.
        token_hash: Digest,
        /// Who asks.
        by: Actor,
    },
    /// Register an agent as described.
    RegisterAgent(AgentRegistered),
    /// Set (or clear) an agent's accountable owner and expiry.
    SetAgentIdentity(AgentIdentitySet),
    /// Attest that someone reviewed an agent.
    ReviewAgent(AgentReviewed),
    /// Replace an agent's secret; the previous one stays valid until the given instant.
    RotateAgentSecret(AgentSecretRotated),
    /// Disable an agent: no new tokens, and every token it holds or acted in is revoked.
    DisableAgent {
        /// The agent.
        client_id: ClientId,
        /// Who asks.
        by: Actor,
    },
    /// Enable a disabled agent (tokens revoked when it was disabled stay revoked).
    EnableAgent {
        /// The agent.
        client_id: ClientId,
        /// Who asks.
        by: Actor,
    },
    /// Set an agent's governance ceilings.
    SetAgentPolicy(AgentPolicySet),
    /// Make a new signing key current (its private part is already stored).
    RotateSigningKey(SigningKeyRotated),
    /// Record a token that was just signed (it is handed out only once this is durable).
    IssueToken(TokenIssued),
    /// Record one use of a token, enforcing its operation quota exactly.
    RecordOperation {
        /// Digest of the token's bytes.
        digest: Digest,
        /// What was done.
        operation: String,
        /// What it was done to.
        resource: Option<String>,
        /// The caller's retry key.
        idempotency_key: Option<String>,
    },
    /// Revoke a token and everything derived from it.
    RevokeToken {
        /// The token.
        jti: Jti,
        /// Who asks.
        by: Actor,
    },
}

/// What a command's success tells the caller besides "done".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Nothing more.
    Done,
    /// After recording an operation.
    Operation {
        /// Operations left (none: no quota).
        operations_remaining: Option<u64>,
        /// The token can still be used.
        active: bool,
    },
    /// After a revocation: how many tokens it ended.
    Revoked {
        /// Tokens revoked by this command (0 when already revoked or unknown).
        tokens: usize,
    },
}

/// Why a command was refused. Each refusal names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A user id already in use.
    #[error("user {0} already exists")]
    UserExists(UserId),
    /// An email already in use.
    #[error("a user with email {0} already exists")]
    EmailTaken(String),
    /// A client id already in use.
    #[error("agent {0} already exists")]
    AgentExists(String),
    /// A person who is not registered.
    #[error("user {0} is not registered")]
    UnknownUser(UserId),
    /// Deactivating a deactivated person, or reactivating an active one.
    #[error("user {0} is already {1}")]
    UserAlready(UserId, &'static str),
    /// An admin token whose hash is already recorded.
    #[error("that admin token already exists")]
    AdminTokenExists,
    /// A signing key id already recorded.
    #[error("signing key {0} already exists")]
    DuplicateKey(String),
    /// A signing key whose public members do not fit its algorithm.
    #[error("the signing key does not fit its algorithm: {0}")]
    BadSigningKey(String),
    /// A rotation that names as its predecessor a key that is no longer current.
    #[error("the signing key changed meanwhile (now {0}); rotate again")]
    KeyRotatedMeanwhile(String),
    /// Disabling a disabled agent, or enabling an enabled one.
    #[error("agent {0} is already {1}")]
    AgentAlready(String, &'static str),
    /// An owner that is not a registered user.
    #[error("owner {0} is not a registered user")]
    UnknownOwner(UserId),
    /// An agent that does not exist.
    #[error("agent {0} is not registered")]
    UnknownAgent(String),
    /// A disabled agent.
    #[error("agent {0} is disabled")]
    AgentDisabled(String),
    /// An agent past its expiry.
    #[error("agent {0} expired at {1}")]
    AgentExpired(String, Timestamp),
    /// A person who does not exist or is deactivated.
    #[error("user {0} is unknown or deactivated")]
    UserInactive(UserId),
    /// A jti or token digest already recorded.
    #[error("token {0} was already issued")]
    DuplicateToken(Jti),
    /// A parent token that is not live.
    #[error("parent token {0} is revoked, expired or unknown")]
    ParentInactive(Jti),
    /// A token whose expiry is not after its issue time.
    #[error("a token must expire after it is issued")]
    BadLifetime,
    /// A token writ does not know.
    #[error("the token is not one writ issued")]
    UnknownToken,
    /// A token revoked or past expiry.
    #[error("the token is revoked or expired")]
    TokenInactive,
    /// A token with no operations left.
    #[error("the token's operation quota is used up")]
    QuotaExhausted,
    /// An event too large to store.
    #[error("the event is {0} bytes; the ledger stores events of at most {1} bytes")]
    EventTooLarge(usize, usize),
    /// A command whose events together exceed what one append may carry.
    #[error("the command's events take {0} bytes; one append carries at most {1} bytes")]
    TooLargeToAppend(usize, usize),
    /// An event with no canonical encoding (a bug in the caller, refused rather than stored).
    #[error("the event cannot be encoded canonically: {0}")]
    Unencodable(String),
}

/// Decides `command` against `state` at `now`.
pub fn decide(
    state: &State,
    command: &Command,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    match command {
        Command::RegisterUser {
            user_id,
            email,
            name,
            by,
        } => {
            if state.user(user_id).is_some() {
                return Err(Refusal::UserExists(user_id.clone()));
            }
            if state.user_by_email(email).is_some() {
                return Err(Refusal::EmailTaken(email.clone()));
            }
            let event = UserRegistered {
                user_id: user_id.clone(),
                email: email.clone(),
                name: name.clone(),
                by: by.clone(),
            };
            Ok((vec![event.into()], Answer::Done))
        }
        Command::DeactivateUser { user_id, by } => deactivate_user(state, user_id, by),
        Command::ReactivateUser { user_id, by } => {
            match state.user(user_id) {
                None => return Err(Refusal::UnknownUser(user_id.clone())),
                Some(user) if user.active => {
                    return Err(Refusal::UserAlready(user_id.clone(), "active"));
                }
                Some(_) => {}
            }
            let event = UserReactivated {
                user_id: user_id.clone(),
                by: by.clone(),
            };
            Ok((vec![event.into()], Answer::Done))
        }
        Command::IssueAdminToken {
            token_id,
            token_hash,
            by,
        } => {
            if state.admin_token_by_hash(token_hash).is_some() {
                return Err(Refusal::AdminTokenExists);
            }
            let event = AdminTokenIssued {
                token_id: token_id.clone(),
                token_hash: *token_hash,
                by: by.clone(),
            };
            Ok((vec![event.into()], Answer::Done))
        }
        Command::SetAgentIdentity(identity) => {
            known_agent(state, &identity.client_id)?;
            if let Some(owner) = identity
                .owner
                .as_ref()
                .filter(|owner| state.user(owner).is_none())
            {
                return Err(Refusal::UnknownOwner(owner.clone()));
            }
            Ok((vec![identity.clone().into()], Answer::Done))
        }
        Command::ReviewAgent(review) => {
            known_agent(state, &review.client_id)?;
            Ok((vec![review.clone().into()], Answer::Done))
        }
        Command::RotateAgentSecret(rotation) => {
            known_agent(state, &rotation.client_id)?;
            Ok((vec![rotation.clone().into()], Answer::Done))
        }
        Command::RotateSigningKey(rotation) => {
            if state
                .signing_keys()
                .iter()
                .any(|key| key.kid == rotation.kid)
            {
                return Err(Refusal::DuplicateKey(rotation.kid.to_string()));
            }
            rotation.check().map_err(Refusal::BadSigningKey)?;
            // A rotation names the key it replaces; if another rotation landed first, this
            // one was decided on a key that is no longer current.
            let current = state.signing_keys().last().map(|key| &key.kid);
            if rotation.previous_kid.as_ref() != current {
                return Err(Refusal::KeyRotatedMeanwhile(
                    current.map(ToString::to_string).unwrap_or_default(),
                ));
            }
            Ok((vec![rotation.clone().into()], Answer::Done))
        }
        Command::SetAgentPolicy(policy) => {
            known_agent(state, &policy.client_id)?;
            Ok((vec![policy.clone().into()], Answer::Done))
        }
        Command::DisableAgent { client_id, by } => {
            if !known_agent(state, client_id)?.enabled {
                return Err(Refusal::AgentAlready(client_id.to_string(), "disabled"));
            }
            let mut events: Vec<Event> = vec![
                AgentDisabled {
                    client_id: client_id.clone(),
                    by: by.clone(),
                }
                .into(),
            ];
            events.extend(revoke_all(
                state,
                state.tokens_of_agent(client_id),
                |token| {
                    (token.client_id == *client_id || token.actors.contains(client_id)).then(|| {
                        RevocationCause::AgentDisabled {
                            client_id: client_id.clone(),
                        }
                    })
                },
            ));
            let tokens = events.len() - 1;
            Ok((events, Answer::Revoked { tokens }))
        }
        Command::EnableAgent { client_id, by } => {
            if known_agent(state, client_id)?.enabled {
                return Err(Refusal::AgentAlready(client_id.to_string(), "enabled"));
            }
            Ok((
                vec![
                    AgentEnabled {
                        client_id: client_id.clone(),
                        by: by.clone(),
                    }
                    .into(),
                ],
                Answer::Done,
            ))
        }
        Command::RegisterAgent(agent) => {
            if state.agent(&agent.client_id).is_some() {
                return Err(Refusal::AgentExists(agent.client_id.to_string()));
            }
            if let Some(owner) = agent
                .owner
                .as_ref()
                .filter(|owner| state.user(owner).is_none())
            {
                return Err(Refusal::UnknownOwner(owner.clone()));
            }
            Ok((vec![agent.clone().into()], Answer::Done))
        }
        Command::IssueToken(token) => issue_token(state, token, now),
        Command::RecordOperation {
            digest,
            operation,
            resource,
            idempotency_key,
        } => record_operation(state, digest, operation, resource, idempotency_key, now),
        Command::RevokeToken { jti, by } => {
            let events = cascade(state, jti, RevocationCause::Requested { by: by.clone() });
            let tokens = events.len();
            Ok((events, Answer::Revoked { tokens }))
        }
    }
}

fn known_agent<'s>(
    state: &'s State,
    client_id: &ClientId,
) -> Result<&'s writ_projections::Agent, Refusal> {
    state
        .agent(client_id)
        .ok_or_else(|| Refusal::UnknownAgent(client_id.to_string()))
}

/// Revocations for the live tokens among `jtis`: a token for which `direct` names a
/// cause is revoked for it; any other was derived from one and names its parent.
fn revoke_all(
    state: &State,
    jtis: Vec<Jti>,
    direct: impl Fn(&writ_projections::Token) -> Option<RevocationCause>,
) -> Vec<Event> {
    jtis.into_iter()
        .filter_map(|jti| {
            state
                .token(&jti)
                .filter(|t| matches!(t.status, TokenStatus::Live))
        })
        .filter_map(|token| {
            let parent = token.parent_jti.as_ref().and_then(|p| state.token(p));
            let parent_is_direct = parent.is_some_and(|p| direct(p).is_some());
            let cause = match (direct(token), &token.parent_jti) {
                (Some(_), Some(parent)) if parent_is_direct => RevocationCause::ParentRevoked {
                    parent_jti: parent.clone(),
                },
                (Some(cause), _) => cause,
                (None, Some(parent)) => RevocationCause::ParentRevoked {
                    parent_jti: parent.clone(),
                },
                // Neither revoked for itself nor derived: not this cascade's to revoke.
                (None, None) => return None,
            };
            Some(
                TokenRevoked {
                    jti: token.jti.clone(),
                    cause,
                }
                .into(),
            )
        })
        .collect()
}

fn deactivate_user(
    state: &State,
    user_id: &UserId,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    match state.user(user_id) {
        None => return Err(Refusal::UnknownUser(user_id.clone())),
        Some(user) if !user.active => {
            return Err(Refusal::UserAlready(user_id.clone(), "deactivated"));
        }
        Some(_) => {}
    }
    let mut events: Vec<Event> = vec![
        UserDeactivated {
            user_id: user_id.clone(),
            by: by.clone(),
        }
        .into(),
    ];
    events.extend(revoke_all(state, state.tokens_for_user(user_id), |token| {
        (token.user_id.as_ref() == Some(user_id)).then(|| RevocationCause::UserDeactivated {
            user_id: user_id.clone(),
        })
    }));
    let tokens = events.len() - 1;
    Ok((events, Answer::Revoked { tokens }))
}

fn issue_token(
    state: &State,
    token: &TokenIssued,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let agent = state
        .agent(&token.client_id)
        .ok_or_else(|| Refusal::UnknownAgent(token.client_id.to_string()))?;
    if !agent.enabled {
        return Err(Refusal::AgentDisabled(token.client_id.to_string()));
    }
    if let Some(expired) = agent.expires_at.filter(|end| now >= *end) {
        return Err(Refusal::AgentExpired(token.client_id.to_string(), expired));
    }
    if let Some(user_id) = token
        .user_id
        .as_ref()
        .filter(|u| !state.user(u).is_some_and(|user| user.active))
    {
        return Err(Refusal::UserInactive(user_id.clone()));
    }
    if state.token(&token.jti).is_some() || state.token_by_digest(&token.digest).is_some() {
        return Err(Refusal::DuplicateToken(token.jti.clone()));
    }
    if let Some(parent) = &token.parent_jti
        && !state.token(parent).is_some_and(|p| p.is_active(now))
    {
        return Err(Refusal::ParentInactive(parent.clone()));
    }
    if token.expires_at <= token.issued_at {
        return Err(Refusal::BadLifetime);
    }
    Ok((vec![token.clone().into()], Answer::Done))
}

fn record_operation(
    state: &State,
    digest: &Digest,
    operation: &str,
    resource: &Option<String>,
    idempotency_key: &Option<String>,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let token = state.token_by_digest(digest).ok_or(Refusal::UnknownToken)?;
    if let Some(first) = idempotency_key
        .as_deref()
        .and_then(|key| token.idempotent_answer(key))
    {
        return Ok((
            vec![],
            Answer::Operation {
                operations_remaining: first,
                active: token.is_active(now),
            },
        ));
    }
    if !token.is_active(now) {
        return Err(Refusal::TokenInactive);
    }
    if token.operations_remaining() == Some(0) {
        return Err(Refusal::QuotaExhausted);
    }
    let mut events: Vec<Event> = vec![
        OperationRecorded {
            jti: token.jti.clone(),
            operation: operation.to_owned(),
            resource: resource.clone(),
            idempotency_key: idempotency_key.clone(),
        }
        .into(),
    ];
    let remaining = token.operations_remaining().map(|left| left - 1);
    let mut active = true;
    if remaining == Some(0) {
        events.push(
            TokenExhausted {
                jti: token.jti.clone(),
            }
            .into(),
        );
        if token.expires_on_completion {
            events.extend(cascade(state, &token.jti, RevocationCause::Completed));
            active = false;
        }
    }
    Ok((
        events,
        Answer::Operation {
            operations_remaining: remaining,
            active,
        },
    ))
}

/// Revocations for `root` and every live token derived from it; the root carries `cause`,
/// each descendant names its parent.
pub fn cascade(state: &State, root: &Jti, cause: RevocationCause) -> Vec<Event> {
    state
        .lineage(root)
        .into_iter()
        .filter_map(|jti| state.token(&jti))
        .filter(|token| matches!(token.status, TokenStatus::Live))
        .map(|token| {
            let cause = match &token.parent_jti {
                Some(parent) if token.jti != *root => RevocationCause::ParentRevoked {
                    parent_jti: parent.clone(),
                },
                _ => cause.clone(),
            };
            TokenRevoked {
                jti: token.jti.clone(),
                cause,
            }
            .into()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use writ_projections::Head;
    use writ_schemas::{Hash, KeyId, SigningAlgorithm};

    use super::*;

    fn ed25519(kid: &str, previous: Option<&str>) -> SigningKeyRotated {
        SigningKeyRotated {
            kid: KeyId::from(kid),
            alg: SigningAlgorithm::EdDsa,
            public_key: Some("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into()),
            jwk: None,
            previous_kid: previous.map(KeyId::from),
            by: Some(Actor::System),
        }
    }

    #[test]
    fn a_rotation_must_replace_the_current_key_and_fit_its_algorithm() {
        let now =
            Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap_or_else(|| unreachable!());
        let mut state = State::new();
        let head = Head {
            seq: 1,
            hash: Hash([1; 32]),
            ts: Some(now),
        };
        state.apply(head, &Event::from(ed25519("k1", None)));
        let decided = |rotation: SigningKeyRotated| {
            decide(&state, &Command::RotateSigningKey(rotation), now)
                .map(|(events, _)| events.len())
        };
        assert_eq!(decided(ed25519("k2", Some("k1"))), Ok(1));
        assert_eq!(
            decided(ed25519("k2", None)),
            Err(Refusal::KeyRotatedMeanwhile("k1".into()))
        );
        assert_eq!(
            decided(ed25519("k2", Some("k0"))),
            Err(Refusal::KeyRotatedMeanwhile("k1".into()))
        );
        assert_eq!(
            decided(ed25519("k1", Some("k1"))),
            Err(Refusal::DuplicateKey("k1".into()))
        );
        let mut mismatched = ed25519("k2", Some("k1"));
        mismatched.alg = SigningAlgorithm::Es256;
        assert!(matches!(
            decided(mismatched),
            Err(Refusal::BadSigningKey(_))
        ));
    }
}
