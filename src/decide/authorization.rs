//! Interactive delegation: a person's password and sign-in sessions, the authorization
//! codes their consent issues, and the refresh tokens that keep an agent acting for them.
//!
//! Sessions are ended in the ledger so every node refuses the same cookies: one by its
//! id (a sign-out), or all at once by moving the person's session generation on (sign out
//! everywhere, and every password change).
//!
//! A code is redeemed once. Presented again, it is not refused quietly: the tokens issued
//! from it are revoked and the replay recorded (RFC 6749 §4.1.2, RFC 9700 §4.5.3).
//! A refresh token rotates on every use; a spent one presented again revokes its whole
//! family and records the reuse on the agent (RFC 9700 §4.14.2).

use writ_projections::{SESSIONS_ENDED_KEPT_MAX, State, TokenStatus, User};
use writ_schemas::{
    Actor, AuthorizationCodeIssued, AuthorizationCodeRedeemed, AuthorizationCodeReplayed, ClientId,
    Digest, Event, FamilyId, RefreshTokenIssued, RefreshTokenReuseDetected, RefreshTokenRotated,
    RevocationCause, SessionEnded, SessionsEnded, SessionsEndedReason, SignInFailuresDetected,
    Timestamp, TokenIssued, UserId, UserPasswordSet,
};

use super::{Answer, Refusal};

pub(super) fn set_password(
    state: &State,
    user_id: &UserId,
    password_hash: &str,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let user = state
        .user(user_id)
        .ok_or_else(|| Refusal::UnknownUser(user_id.clone()))?;
    if user.erased {
        return Err(Refusal::UserErased(user_id.clone()));
    }
    match by {
        Actor::Admin { .. } => {}
        Actor::User { user_id: who } if who == user_id => {}
        _ => return Err(Refusal::NotAPerson),
    }
    if !password_hash.starts_with("$argon2id$") {
        return Err(Refusal::Unencodable(
            "a password hash is an argon2id PHC string".into(),
        ));
    }
    let set = UserPasswordSet {
        user_id: user_id.clone(),
        password_hash: password_hash.to_owned(),
        by: by.clone(),
    };
    // A new password ends every session signed in with the old one, on every node.
    let ended = SessionsEnded {
        user_id: user_id.clone(),
        generation: user.session_generation.saturating_add(1),
        reason: SessionsEndedReason::PasswordChanged,
        by: by.clone(),
    };
    Ok((vec![set.into(), ended.into()], Answer::Done))
}

/// The person, known and not erased.
fn person<'s>(state: &'s State, user_id: &UserId) -> Result<&'s User, Refusal> {
    let user = state
        .user(user_id)
        .ok_or_else(|| Refusal::UnknownUser(user_id.clone()))?;
    if user.erased {
        return Err(Refusal::UserErased(user_id.clone()));
    }
    Ok(user)
}

/// One session ended by its id; ending one already ended or lapsed records nothing. A
/// person holding [`SESSIONS_ENDED_KEPT_MAX`] ended sessions still live has all their
/// sessions ended instead, so what every node keeps per person stays bounded.
pub(super) fn end_session(
    state: &State,
    user_id: &UserId,
    session_id: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let user = person(state, user_id)?;
    if expires_at <= now || user.sessions_ended.contains_key(session_id) {
        return Ok((Vec::new(), Answer::Done));
    }
    let live = user.sessions_ended.values().filter(|at| **at > now).count();
    if live >= SESSIONS_ENDED_KEPT_MAX {
        let by = Actor::User {
            user_id: user_id.clone(),
        };
        return end_sessions(state, user_id, SessionsEndedReason::SignOut, &by);
    }
    let ended = SessionEnded {
        user_id: user_id.clone(),
        session_id: session_id.to_owned(),
        expires_at,
    };
    Ok((vec![ended.into()], Answer::Done))
}

/// Every session of the person ended: their generation moves on.
pub(super) fn end_sessions(
    state: &State,
    user_id: &UserId,
    reason: SessionsEndedReason,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let user = person(state, user_id)?;
    match by {
        Actor::Admin { .. } => {}
        Actor::User { user_id: who } if who == user_id => {}
        _ => return Err(Refusal::NotAPerson),
    }
    let ended = SessionsEnded {
        user_id: user_id.clone(),
        generation: user.session_generation.saturating_add(1),
        reason,
        by: by.clone(),
    };
    Ok((vec![ended.into()], Answer::Done))
}

/// A run of failed sign-ins, recorded on the person.
pub(super) fn sign_in_failures(
    state: &State,
    user_id: &UserId,
    failures: u32,
    first_failure_at: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    person(state, user_id)?;
    let detected = SignInFailuresDetected {
        user_id: user_id.clone(),
        failures,
        first_failure_at,
    };
    Ok((vec![detected.into()], Answer::Done))
}

pub(super) fn issue_code(
    state: &State,
    code: &AuthorizationCodeIssued,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let delegation = state
        .delegation(&code.delegation_id)
        .filter(|d| d.user_id == code.user_id && d.client_id == code.client_id)
        .ok_or_else(|| Refusal::UnknownDelegation(code.delegation_id.clone()))?;
    if !delegation.is_active(now) {
        return Err(Refusal::DelegationInactive(code.delegation_id.clone()));
    }
    if let Some(scope) = code.scopes.iter().find(|scope| !delegation.allows(scope)) {
        return Err(Refusal::ScopeNotDelegated(
            code.delegation_id.clone(),
            scope.clone(),
        ));
    }
    if state.code_by_digest(&code.digest).is_some() || state.code(&code.code_id).is_some() {
        return Err(Refusal::DuplicateCode);
    }
    Ok((vec![code.clone().into()], Answer::Done))
}

/// Live tokens of the family, and everything derived from them, revoked.
fn revoke_family(state: &State, family: &FamilyId) -> Vec<Event> {
    state
        .tokens_of_family(family)
        .into_iter()
        .filter(|jti| {
            state
                .token(jti)
                .is_some_and(|t| matches!(t.status, TokenStatus::Live))
        })
        .map(|jti| {
            writ_schemas::TokenRevoked {
                jti,
                cause: RevocationCause::RefreshFamilyRevoked {
                    family_id: family.clone(),
                },
            }
            .into()
        })
        .collect()
}

/// `record` (a replay, a reuse or a revocation), then the revocation of every live token
/// of `family`; and how many tokens that revokes.
fn ending_family(state: &State, record: Event, family: Option<&FamilyId>) -> (Vec<Event>, usize) {
    let mut events = vec![record];
    events.extend(family.map(|f| revoke_family(state, f)).unwrap_or_default());
    let tokens = events.len() - 1;
    (events, tokens)
}

/// What a redemption or a refresh issues: the access token and the refresh token beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The access token (its `family_id` the refresh family).
    pub token: TokenIssued,
    /// The refresh token.
    pub refresh: RefreshTokenIssued,
}

pub(super) fn redeem_code(
    state: &State,
    digest: &Digest,
    client_id: &ClientId,
    issued: Option<&Issued>,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let code = state
        .code_by_digest(digest)
        .filter(|code| code.issued.client_id == *client_id)
        .ok_or(Refusal::UnknownCode)?;
    if let Some(jti) = &code.redeemed {
        let family = state.token(jti).and_then(|t| t.family_id.as_ref());
        let replayed = AuthorizationCodeReplayed {
            code_id: code.issued.code_id.clone(),
            client_id: client_id.clone(),
        };
        let (events, tokens) = ending_family(state, replayed.into(), family);
        return Ok((events, Answer::Replayed { tokens }));
    }
    if now >= code.issued.expires_at {
        return Err(Refusal::CodeExpired);
    }
    let issued = issued.ok_or(Refusal::UnknownCode)?;
    let (mut events, _) = super::issue_token(state, &issued.token, now)?;
    events.push(issued.refresh.clone().into());
    events.push(
        AuthorizationCodeRedeemed {
            code_id: code.issued.code_id.clone(),
            jti: issued.token.jti.clone(),
        }
        .into(),
    );
    Ok((events, Answer::Done))
}

pub(super) fn refresh(
    state: &State,
    digest: &Digest,
    client_id: &ClientId,
    issued: Option<&Issued>,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let spent = state
        .refresh_token_by_digest(digest)
        .filter(|r| r.client_id == *client_id)
        .ok_or(Refusal::UnknownRefreshToken)?;
    let family = state.family(&spent.family_id);
    if family.is_some_and(|f| f.is_dead()) {
        return Err(Refusal::RefreshFamilyRevoked);
    }
    if spent.replaced_by.is_some() {
        let reused = RefreshTokenReuseDetected {
            refresh_id: spent.refresh_id.clone(),
            family_id: spent.family_id.clone(),
            client_id: client_id.clone(),
        };
        let (events, tokens) = ending_family(state, reused.into(), Some(&spent.family_id));
        return Ok((events, Answer::Replayed { tokens }));
    }
    if now >= spent.expires_at {
        return Err(Refusal::RefreshExpired);
    }
    let issued = issued.ok_or(Refusal::UnknownRefreshToken)?;
    if issued.refresh.family_id != spent.family_id {
        return Err(Refusal::Unencodable(
            "a rotated refresh token stays in its family".into(),
        ));
    }
    if let Some(scope) = issued
        .token
        .scopes
        .iter()
        .find(|s| !spent.scopes.contains(s))
    {
        return Err(Refusal::ScopeBeyondRefresh(scope.clone()));
    }
    let (mut events, _) = super::issue_token(state, &issued.token, now)?;
    events.push(
        RefreshTokenRotated {
            refresh_id: spent.refresh_id.clone(),
            replaced_by: issued.refresh.refresh_id.clone(),
        }
        .into(),
    );
    events.push(issued.refresh.clone().into());
    Ok((events, Answer::Done))
}

pub(super) fn revoke_refresh(
    state: &State,
    digest: &Digest,
    client_id: &ClientId,
) -> Result<(Vec<Event>, Answer), Refusal> {
    // RFC 7009 §2.1: another client's refresh token is refused, and stays usable.
    if state
        .refresh_token_by_digest(digest)
        .is_some_and(|r| r.client_id != *client_id)
    {
        return Err(Refusal::NotTokenHolder(client_id.clone()));
    }
    let Some(refresh) = state
        .refresh_token_by_digest(digest)
        .filter(|r| !state.family(&r.family_id).is_some_and(|f| f.is_dead()))
    else {
        // RFC 7009 §2.2: an unknown (or already dead) token is not an error.
        return Ok((vec![], Answer::Revoked { tokens: 0 }));
    };
    let revoked = writ_schemas::RefreshTokenRevoked {
        refresh_id: refresh.refresh_id.clone(),
        family_id: refresh.family_id.clone(),
        by: Actor::Agent {
            client_id: client_id.clone(),
        },
    };
    let (events, tokens) = ending_family(state, revoked.into(), Some(&refresh.family_id));
    Ok((events, Answer::Revoked { tokens }))
}
