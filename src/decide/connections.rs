//! Connections: a person's account at an MCP server's OAuth provider. Established after
//! the authorization code flow, refreshed (by a background task ahead of expiry, or on
//! demand), marked broken when the provider rejects the refresh token, deleted by the
//! person or an admin.
//!
//! A refresh and a refresh failure name the generation of the connection they were tried
//! on: one decided on a connection that has moved on since (another node, or another
//! request, refreshed it first) is refused, so a rotated refresh token's rejection never
//! breaks a connection that a newer token keeps alive, and a broken connection records
//! its failure once.

use writ_projections::State;
use writ_schemas::{
    Actor, ConnectionDeleted, ConnectionEstablished, ConnectionRefreshFailed, ConnectionRefreshed,
    Event, ServerAuth, ServerId, UserId,
};

use super::{Answer, Refusal, may_act_for};

pub(super) fn establish(
    state: &State,
    connection: &ConnectionEstablished,
) -> Result<(Vec<Event>, Answer), Refusal> {
    if !state
        .user(&connection.user_id)
        .is_some_and(|user| user.active)
    {
        return Err(Refusal::UserInactive(connection.user_id.clone()));
    }
    oauth_server(state, &connection.server_id)?;
    Ok((vec![connection.clone().into()], Answer::Done))
}

pub(super) fn refreshed(
    state: &State,
    refresh: &ConnectionRefreshed,
) -> Result<(Vec<Event>, Answer), Refusal> {
    current(
        state,
        &refresh.user_id,
        &refresh.server_id,
        refresh.generation,
    )?;
    Ok((vec![refresh.clone().into()], Answer::Done))
}

pub(super) fn refresh_failed(
    state: &State,
    failure: &ConnectionRefreshFailed,
) -> Result<(Vec<Event>, Answer), Refusal> {
    current(
        state,
        &failure.user_id,
        &failure.server_id,
        failure.generation,
    )?;
    Ok((vec![failure.clone().into()], Answer::Done))
}

pub(super) fn delete(
    state: &State,
    user_id: &UserId,
    server_id: &ServerId,
    by: &Actor,
) -> Result<(Vec<Event>, Answer), Refusal> {
    if !may_act_for(by, user_id)
        || !state
            .connection(user_id, server_id)
            .is_some_and(|c| c.status != writ_projections::ConnectionStatus::Deleted)
    {
        return Err(Refusal::UnknownConnection(server_id.clone()));
    }
    let event = ConnectionDeleted {
        user_id: user_id.clone(),
        server_id: server_id.clone(),
        by: by.clone(),
    };
    Ok((vec![event.into()], Answer::Done))
}

fn oauth_server(state: &State, server_id: &ServerId) -> Result<(), Refusal> {
    match state.server(server_id).map(|server| &server.auth) {
        None => Err(Refusal::UnknownServer(server_id.clone())),
        Some(ServerAuth::None) => Err(Refusal::ServerNeedsNoConnection(server_id.clone())),
        Some(ServerAuth::Oauth(_)) => Ok(()),
    }
}

/// The connection is held and still at `generation`.
fn current(
    state: &State,
    user_id: &UserId,
    server_id: &ServerId,
    generation: u64,
) -> Result<(), Refusal> {
    let connection = state
        .connection(user_id, server_id)
        .filter(|c| c.is_held())
        .ok_or_else(|| Refusal::UnknownConnection(server_id.clone()))?;
    if connection.generation != generation {
        return Err(Refusal::ConnectionMovedOn(server_id.clone()));
    }
    Ok(())
}
