//! On-behalf-of tokens by user id: `client_credentials` with `actor_token` naming the
//! person and `actor_token_type` saying it is a writ user id. The agent then acts for
//! that person only under a delegation in force from them to it, and the token is
//! narrowed by the delegation (scopes, expiry). Reads the projections and takes `now` as
//! a value; the sequencer checks the delegation again when it records the token.

use std::collections::BTreeMap;

use writ_projections::{Agent, Delegation, State};
use writ_schemas::{ClientId, DelegationId, Jti, Timestamp, UserId};

use super::Terms;
use crate::http::oauth_error::OAuthError;

/// The `actor_token_type` naming a person by their writ user id.
pub const USER_ID_TOKEN_TYPE: &str = "urn:writ:params:oauth:token-type:user-id";

/// The one sentence for "this agent may not act for this id", whether the id is unknown
/// or has no delegation in force, so an agent cannot probe which ids are people.
pub(crate) const NO_DELEGATION: &str = "no active delegation for this user; the person must delegate to this agent first (POST /api/v1/agents/{client_id}/delegations)";

/// Whom an on-behalf-of token acts for, and under which delegation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActingFor {
    /// The delegating person (the token's `sub`).
    pub user_id: UserId,
    /// The delegation that lets the agent act for them.
    pub delegation_id: DelegationId,
    /// The agents that acted before this one, outermost first: empty when the agent acts
    /// for the person directly, the exchanged token's `act` chain when it was delegated on.
    pub earlier_actors: Vec<ClientId>,
    /// The token this one was exchanged from, if any (revoking it revokes this one).
    pub parent_jti: Option<Jti>,
}

/// The person a token request names by `actor_token`, if it names one; the two
/// parameters come together or not at all.
pub fn named_user(form: &BTreeMap<String, String>) -> Result<Option<UserId>, OAuthError> {
    let (token, token_type) = match (form.get("actor_token"), form.get("actor_token_type")) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(format!(
                "actor_token needs actor_token_type={USER_ID_TOKEN_TYPE}"
            )));
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type needs actor_token: the id of the user the agent acts for",
            ));
        }
        (Some(token), Some(token_type)) => (token, token_type),
    };
    if token_type != USER_ID_TOKEN_TYPE {
        return Err(OAuthError::invalid_request(format!(
            "actor_token_type `{token_type}` is not served with client_credentials; send {USER_ID_TOKEN_TYPE} with the user's id"
        )));
    }
    parse_user_id(token, "actor_token").map(Some)
}

/// A person's id as the parameter `param` gave it: a UUID, written as writ writes ids.
pub fn parse_user_id(text: &str, param: &str) -> Result<UserId, OAuthError> {
    let id = uuid::Uuid::try_parse(text).map_err(|_| {
        OAuthError::invalid_grant(format!(
            "{param} is not a user id: send the delegating user's id, a UUID"
        ))
    })?;
    Ok(UserId(id.hyphenated().to_string()))
}

/// Narrows `terms` to what `user_id`'s newest delegation in force to `agent` allows, or
/// says why the agent may not act for them.
pub fn on_behalf_of(
    state: &State,
    agent: &Agent,
    user_id: UserId,
    scope_requested: bool,
    now: Timestamp,
    mut terms: Terms,
) -> Result<Terms, OAuthError> {
    let delegation = delegation_in_force(state, agent, &user_id, now)?;
    if let Some(delegated) = &delegation.scopes {
        if scope_requested {
            if let Some(outside) = terms.scopes.iter().find(|s| !delegated.contains(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope `{outside}` is outside the user's delegation to this agent"
                )));
            }
        } else {
            terms.scopes.retain(|scope| delegated.contains(scope));
        }
    }
    if let Some(end) = delegation.expires_at {
        // `exp` is whole seconds after `iat`: never past the delegation's end.
        let left = end.unix_seconds().saturating_sub(now.unix_seconds());
        let left = u64::try_from(left)
            .ok()
            .filter(|seconds| *seconds > 0)
            .ok_or_else(|| OAuthError::grant_forbidden(NO_DELEGATION))?;
        terms.ttl_seconds = terms.ttl_seconds.min(left);
    }
    crate::decide::within_depth(state, std::slice::from_ref(&agent.client_id))
        .map_err(|refused| OAuthError::grant_forbidden(refused.to_string()))?;
    terms.acting_for = Some(ActingFor {
        user_id,
        delegation_id: delegation.delegation_id.clone(),
        earlier_actors: Vec::new(),
        parent_jti: None,
    });
    Ok(terms)
}

fn delegation_in_force<'s>(
    state: &'s State,
    agent: &Agent,
    user_id: &UserId,
    now: Timestamp,
) -> Result<&'s Delegation, OAuthError> {
    let Some(user) = state.user(user_id) else {
        return Err(OAuthError::grant_forbidden(NO_DELEGATION));
    };
    let to_agent = || {
        state
            .delegations_of_user(user_id)
            .filter(|d| d.client_id == agent.client_id)
    };
    // Said only to an agent the person once delegated to: to any other, a deactivated
    // person looks like an unknown id.
    if !user.active && to_agent().next().is_some() {
        return Err(OAuthError::grant_forbidden(
            "delegator user is deactivated; an admin must reactivate them first",
        ));
    }
    to_agent()
        .filter(|d| user.active && d.is_active(now))
        .last()
        .ok_or_else(|| OAuthError::grant_forbidden(NO_DELEGATION))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn refusal(pairs: &[(&str, &str)]) -> (&'static str, u16) {
        match named_user(&form(pairs)) {
            Err(err) => (err.error, err.status.as_u16()),
            Ok(named) => unreachable!("refused, not {named:?}"),
        }
    }

    #[test]
    fn a_person_is_named_by_a_uuid_with_the_user_id_token_type() {
        assert_eq!(named_user(&form(&[])).ok(), Some(None));
        let id = "5F0C6A4E-8D1B-4C1E-9A53-3F7E2B9D0C11";
        let named = named_user(&form(&[
            ("actor_token", id),
            ("actor_token_type", USER_ID_TOKEN_TYPE),
        ]));
        assert_eq!(
            named.ok().flatten(),
            Some(UserId::from("5f0c6a4e-8d1b-4c1e-9a53-3f7e2b9d0c11")),
            "written as writ writes ids"
        );
        assert_eq!(refusal(&[("actor_token", id)]), ("invalid_request", 400));
        assert_eq!(
            refusal(&[("actor_token_type", USER_ID_TOKEN_TYPE)]),
            ("invalid_request", 400)
        );
        assert_eq!(
            refusal(&[("actor_token", id), ("actor_token_type", "urn:x")]),
            ("invalid_request", 400)
        );
        assert_eq!(
            refusal(&[
                ("actor_token", "ada"),
                ("actor_token_type", USER_ID_TOKEN_TYPE)
            ]),
            ("invalid_grant", 400)
        );
    }
}
