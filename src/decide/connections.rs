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
//!
//! A key rotation re-wraps a connection's tokens (and a server's OAuth client secret)
//! under the new key-encryption key. A re-wrap names the generation it read, like a
//! refresh, so tokens a refresh has replaced since are never written back.

use writ_projections::State;
use writ_schemas::{
    Actor, ConnectionDeleted, ConnectionEstablished, ConnectionRefreshFailed, ConnectionRefreshed,
    ConnectionRewrapped, Event, ServerAuth, ServerId, ServerSecretRewrapped, UserId,
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

pub(super) fn rewrapped(
    state: &State,
    rewrap: &ConnectionRewrapped,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let connection = current(state, &rewrap.user_id, &rewrap.server_id, rewrap.generation)?;
    // Dropping or inventing a refresh token is a refresh's business, not a re-wrap's.
    if connection.refresh_token.is_some() != rewrap.refresh_token.is_some() {
        return Err(Refusal::RewrapMismatch(rewrap.server_id.clone()));
    }
    Ok((vec![rewrap.clone().into()], Answer::Done))
}

pub(super) fn server_secret_rewrapped(
    state: &State,
    rewrap: &ServerSecretRewrapped,
) -> Result<(Vec<Event>, Answer), Refusal> {
    match state.server(&rewrap.server_id).map(|server| &server.auth) {
        None => Err(Refusal::UnknownServer(rewrap.server_id.clone())),
        Some(ServerAuth::Oauth(oauth)) if oauth.client_secret.is_some() => {
            Ok((vec![rewrap.clone().into()], Answer::Done))
        }
        Some(_) => Err(Refusal::ServerHoldsNoSecret(rewrap.server_id.clone())),
    }
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

/// The connection, held and still at `generation`.
fn current<'s>(
    state: &'s State,
    user_id: &UserId,
    server_id: &ServerId,
    generation: u64,
) -> Result<&'s writ_projections::Connection, Refusal> {
    let connection = state
        .connection(user_id, server_id)
        .filter(|c| c.is_held())
        .ok_or_else(|| Refusal::UnknownConnection(server_id.clone()))?;
    if connection.generation != generation {
        return Err(Refusal::ConnectionMovedOn(server_id.clone()));
    }
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use writ_projections::Head;
    use writ_schemas::{Hash, ServerRegistered, Timestamp, UpstreamOAuth, Wrapped};

    use super::*;
    use crate::decide::{Command, decide};

    fn wrapped(kek_id: &str) -> Wrapped {
        Wrapped {
            kek_id: kek_id.into(),
            nonce: "AAAAAAAAAAAAAAAA".into(),
            ciphertext: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        }
    }

    fn at() -> Timestamp {
        Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap_or_else(|| unreachable!())
    }

    fn server(id: &str, client_secret: Option<Wrapped>) -> Event {
        ServerRegistered {
            server_id: ServerId::from(id),
            name: id.into(),
            url: format!("https://{id}.example/mcp"),
            auth: ServerAuth::Oauth(UpstreamOAuth {
                authorization_url: format!("https://{id}.example/auth"),
                token_url: format!("https://{id}.example/token"),
                revocation_url: None,
                client_id: "writ".into(),
                client_secret,
                scopes: vec![],
            }),
            by: Actor::System,
        }
        .into()
    }

    /// Alice connected to `srv` (with a refresh token) and refreshed once: generation 2.
    fn world() -> State {
        let alice = UserId::from("alice");
        let mut state = State::new();
        let mut events = vec![server("srv", Some(wrapped("old"))), server("open", None)];
        if let Command::RegisterUser {
            user_id,
            email_sealed,
            email_hash,
            ..
        } = Command::test_registration(alice.clone(), "alice@example.com")
        {
            events.push(
                writ_schemas::UserRegistered {
                    user_id,
                    email: None,
                    name: None,
                    email_sealed: Some(email_sealed),
                    email_hash: Some(email_hash),
                    name_sealed: None,
                    email_skeleton_hash: None,
                    by: Actor::System,
                }
                .into(),
            );
        }
        events.push(
            ConnectionEstablished {
                user_id: alice.clone(),
                server_id: ServerId::from("srv"),
                access_token: wrapped("old"),
                refresh_token: Some(wrapped("old")),
                expires_at: None,
                scopes: vec![],
            }
            .into(),
        );
        events.push(
            ConnectionRefreshed {
                user_id: alice,
                server_id: ServerId::from("srv"),
                generation: 1,
                access_token: wrapped("old"),
                refresh_token: None,
                expires_at: None,
            }
            .into(),
        );
        for event in events {
            let head = Head {
                seq: state.head().seq + 1,
                hash: Hash([7; 32]),
                ts: Some(at()),
            };
            state.apply(head, &event);
        }
        state
    }

    fn rewrap(server_id: &str, generation: u64, refresh: bool) -> Command {
        Command::RewrapConnection(ConnectionRewrapped {
            user_id: UserId::from("alice"),
            server_id: ServerId::from(server_id),
            generation,
            access_token: wrapped("new"),
            refresh_token: refresh.then(|| wrapped("new")),
        })
    }

    #[test]
    fn a_rewrap_names_a_held_connection_at_its_generation_and_replaces_only_the_ciphertext() {
        let mut state = world();
        let decided = |state: &State, command: &Command| {
            decide(state, command, at()).map(|(events, _)| events)
        };
        assert_eq!(
            decided(&state, &rewrap("srv", 1, true)),
            Err(Refusal::ConnectionMovedOn(ServerId::from("srv")))
        );
        assert_eq!(
            decided(&state, &rewrap("other", 2, true)),
            Err(Refusal::UnknownConnection(ServerId::from("other")))
        );
        assert_eq!(
            decided(&state, &rewrap("srv", 2, false)),
            Err(Refusal::RewrapMismatch(ServerId::from("srv")))
        );
        let events = decided(&state, &rewrap("srv", 2, true)).unwrap_or_default();
        assert_eq!(events.len(), 1);
        let head = Head {
            seq: state.head().seq + 1,
            hash: Hash([8; 32]),
            ts: Some(at()),
        };
        state.apply(head, &events[0]);
        let connection = state
            .connection(&UserId::from("alice"), &ServerId::from("srv"))
            .cloned()
            .unwrap_or_else(|| unreachable!("alice's connection is held"));
        assert_eq!(connection.generation, 2, "a re-wrap is not a refresh");
        assert_eq!(connection.access_token, wrapped("new"));
        assert_eq!(connection.refresh_token, Some(wrapped("new")));
        assert_eq!(connection.refreshed_at, Some(at()));
        // Deleted: nothing left to re-wrap.
        let deleted = ConnectionDeleted {
            user_id: UserId::from("alice"),
            server_id: ServerId::from("srv"),
            by: Actor::System,
        };
        let head = Head {
            seq: state.head().seq + 1,
            hash: Hash([9; 32]),
            ts: Some(at()),
        };
        state.apply(head, &deleted.into());
        assert_eq!(
            decided(&state, &rewrap("srv", 2, true)),
            Err(Refusal::UnknownConnection(ServerId::from("srv")))
        );
    }

    #[test]
    fn a_server_secret_rewrap_needs_a_known_server_that_holds_a_secret() {
        let mut state = world();
        let rewrap = |state: &State, server_id: &str| {
            let command = Command::RewrapServerSecret(ServerSecretRewrapped {
                server_id: ServerId::from(server_id),
                client_secret: wrapped("new"),
            });
            decide(state, &command, at()).map(|(events, _)| events)
        };
        let events = rewrap(&state, "srv").unwrap_or_default();
        assert_eq!(events.len(), 1);
        let head = Head {
            seq: state.head().seq + 1,
            hash: Hash([8; 32]),
            ts: Some(at()),
        };
        state.apply(head, &events[0]);
        let secret = match state.server(&ServerId::from("srv")).map(|s| &s.auth) {
            Some(ServerAuth::Oauth(oauth)) => oauth.client_secret.clone(),
            _ => None,
        };
        assert_eq!(secret, Some(wrapped("new")));
        let rewrap = |server_id: &str| rewrap(&state, server_id).map(|events| events.len());
        assert_eq!(
            rewrap("open"),
            Err(Refusal::ServerHoldsNoSecret(ServerId::from("open")))
        );
        assert_eq!(
            rewrap("gone"),
            Err(Refusal::UnknownServer(ServerId::from("gone")))
        );
    }
}
