//! Session grants: a person lends their upstream session (their connection to an MCP
//! server) to an agent, for themselves or shared with everyone acting through the agent;
//! and whose session a tool call through the agent uses.
//!
//! Rules (API.md, "MCP servers and session grants"): only the person whose session it is
//! creates or toggles a grant, and only while they hold a connection to the server; a
//! person has at most one unrevoked grant per agent and server; at most one unrevoked
//! grant per agent and server is shared, so promoting one to shared revokes any other
//! shared one in the same append; revoking a grant leaves the delegation alone.

use writ_projections::{SessionGrant, State};
use writ_schemas::{
    Actor, ClientId, Event, GrantId, ServerId, ServerRegistered, SessionGrantCreated,
    SessionGrantRevoked, SessionGrantToggled, Timestamp, UserId,
};

use super::{Answer, Refusal, known_agent, may_act_for};

/// Most unrevoked session grants a person may have at once.
pub const SESSION_GRANTS_PER_USER_MAX: usize = 1000;

/// Registers an MCP server (the HTTP layer lets only an admin ask).
pub(super) fn register_server(
    state: &State,
    server: &ServerRegistered,
) -> Result<(Vec<Event>, Answer), Refusal> {
    if state.server(&server.server_id).is_some() {
        return Err(Refusal::ServerExists(server.server_id.clone()));
    }
    Ok((vec![server.clone().into()], Answer::Done))
}

/// Records a new grant of the caller's session to the agent.
pub(super) fn create(
    state: &State,
    grant: &SessionGrantCreated,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let user_id = the_person(&grant.by, &grant.user_id)?;
    usable_route(state, &grant.client_id, &grant.server_id, user_id, now)?;
    if state.session_grant(&grant.grant_id).is_some() {
        return Err(Refusal::SessionGrantExists(grant.grant_id.clone()));
    }
    if let Some(own) = state.own_session_grant(&grant.client_id, &grant.server_id, user_id) {
        return Err(Refusal::SessionGrantHeld(own.grant_id.clone()));
    }
    let held = state
        .session_grants_of_user(user_id)
        .filter(|g| g.revoked_at.is_none())
        .count();
    if held >= SESSION_GRANTS_PER_USER_MAX {
        return Err(Refusal::TooManySessionGrants(user_id.clone(), held));
    }
    let mut events = Vec::new();
    if grant.shared {
        events.extend(demote_shared(
            state,
            &grant.client_id,
            &grant.server_id,
            &grant.by,
        ));
    }
    events.push(grant.clone().into());
    Ok((events, Answer::Done))
}

/// Flips the caller's grant to the agent for the server between personal and shared.
pub(super) fn toggle(
    state: &State,
    client_id: &ClientId,
    server_id: &ServerId,
    by: &Actor,
    now: Timestamp,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let Actor::User { user_id } = by else {
        return Err(Refusal::NotAPerson);
    };
    usable_route(state, client_id, server_id, user_id, now)?;
    let grant = state
        .own_session_grant(client_id, server_id, user_id)
        .ok_or_else(|| Refusal::NoSessionGrant(client_id.clone(), server_id.clone()))?;
    let shared = !grant.shared;
    let mut events = Vec::new();
    if shared {
        events.extend(demote_shared(state, client_id, server_id, by));
    }
    events.push(
        SessionGrantToggled {
            grant_id: grant.grant_id.clone(),
            shared,
            by: by.clone(),
        }
        .into(),
    );
    Ok((events, Answer::Done))
}

/// Revokes a grant; the delegation, if any, stays.
pub(super) fn revoke(
    state: &State,
    grant_id: &GrantId,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let grant = state
        .session_grant(grant_id)
        .filter(|grant| may_act_for(by, &grant.user_id))
        .ok_or_else(|| Refusal::UnknownSessionGrant(grant_id.clone()))?;
    if grant.revoked_at.is_some() {
        return Err(Refusal::SessionGrantRevoked(grant_id.clone()));
    }
    let event = SessionGrantRevoked {
        grant_id: grant_id.clone(),
        by: by.clone(),
    };
    Ok((vec![event.into()], Answer::Done))
}

/// Whose session a call by the agent to the server uses, acting for `user` (none for a
/// token of the agent's own): that person's own grant first, then the shared grant.
/// A token acting for nobody uses no person's session: a shared grant lends a session to
/// the people acting through the agent, not to the agent on its own.
pub fn resolve<'s>(
    state: &'s State,
    client_id: &ClientId,
    server_id: &ServerId,
    user: Option<&UserId>,
) -> Result<&'s SessionGrant, Refusal> {
    let Some(user_id) = user else {
        return Err(Refusal::NoCredentials(server_id.clone()));
    };
    state
        .own_session_grant(client_id, server_id, user_id)
        .or_else(|| state.shared_session_grant(client_id, server_id))
        .ok_or_else(|| Refusal::NoCredentials(server_id.clone()))
}

/// The person a grant command is by: they alone lend their session.
fn the_person<'a>(by: &'a Actor, user_id: &UserId) -> Result<&'a UserId, Refusal> {
    match by {
        Actor::User { user_id: caller } if caller == user_id => Ok(caller),
        _ => Err(Refusal::NotAPerson),
    }
}

/// The person is active, the agent in service, the server registered, and the person
/// holds a connection to it.
fn usable_route(
    state: &State,
    client_id: &ClientId,
    server_id: &ServerId,
    user_id: &UserId,
    now: Timestamp,
) -> Result<(), Refusal> {
    if !state.user(user_id).is_some_and(|user| user.active) {
        return Err(Refusal::UserInactive(user_id.clone()));
    }
    let agent = known_agent(state, client_id)?;
    if !agent.enabled {
        return Err(Refusal::AgentDisabled(client_id.to_string()));
    }
    if let Some(expired) = agent.expires_at.filter(|end| now >= *end) {
        return Err(Refusal::AgentExpired(client_id.to_string(), expired));
    }
    if state.server(server_id).is_none() {
        return Err(Refusal::UnknownServer(server_id.clone()));
    }
    if !state
        .connection(user_id, server_id)
        .is_some_and(|connection| connection.is_held())
    {
        return Err(Refusal::NoConnection(server_id.clone()));
    }
    Ok(())
}

/// Revocations of the agent's other shared grant for the server, made when another
/// grant becomes the shared one.
fn demote_shared(
    state: &State,
    client_id: &ClientId,
    server_id: &ServerId,
    by: &Actor,
) -> Option<Event> {
    state
        .shared_session_grant(client_id, server_id)
        .map(|other| {
            SessionGrantRevoked {
                grant_id: other.grant_id.clone(),
                by: by.clone(),
            }
            .into()
        })
}
