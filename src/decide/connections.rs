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
//! A connection that ends (deleted, or its person erased) keeps its wrapped tokens in a
//! pending revocation: a background task asks the provider to revoke them (RFC 7009) and
//! records each attempt's outcome, which is accepted once per attempt in order, so two
//! nodes racing record it once. A server that names no `revocation_url` gets its
//! not-revocable outcomes in the same append as the end.
//!
//! A key rotation re-wraps a connection's tokens (and a server's OAuth client secret)
//! under the new key-encryption key. A re-wrap names the generation it read, like a
//! refresh, so tokens a refresh has replaced since are never written back.

use writ_projections::{ConnectionStatus, State};
use writ_schemas::{
    Actor, ConnectionDeleted, ConnectionEstablished, ConnectionRefreshFailed, ConnectionRefreshed,
    ConnectionRewrapped, Event, RevocationOutcome, ServerAuth, ServerId, ServerSecretRewrapped,
    UpstreamRevocationCompleted, UpstreamTokenKind, UserId,
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
            .is_some_and(|c| c.status != ConnectionStatus::Deleted)
    {
        return Err(Refusal::UnknownConnection(server_id.clone()));
    }
    Ok((end(state, user_id, server_id, by), Answer::Done))
}

/// Ends every connection of the person's that has not ended yet.
pub(super) fn end_all(state: &State, user_id: &UserId, by: &Actor) -> Vec<Event> {
    let ended: Vec<ServerId> = state
        .connections_of_user(user_id)
        .filter(|c| c.status != ConnectionStatus::Deleted)
        .map(|c| c.server_id.clone())
        .collect();
    ended
        .iter()
        .flat_map(|server_id| end(state, user_id, server_id, by))
        .collect()
}

/// The end of a connection that has not ended: its deletion, and when the server has no
/// revocation endpoint, that its tokens cannot be revoked upstream.
fn end(state: &State, user_id: &UserId, server_id: &ServerId, by: &Actor) -> Vec<Event> {
    let mut events: Vec<Event> = vec![
        ConnectionDeleted {
            user_id: user_id.clone(),
            server_id: server_id.clone(),
            by: by.clone(),
        }
        .into(),
    ];
    let revocable = match state.server(server_id).map(|server| &server.auth) {
        Some(ServerAuth::Oauth(oauth)) => oauth.revocation_url.is_some(),
        _ => false,
    };
    let Some(connection) = state.connection(user_id, server_id) else {
        return events;
    };
    if revocable {
        return events;
    }
    let mut tokens = vec![UpstreamTokenKind::AccessToken];
    if connection.refresh_token.is_some() {
        tokens.insert(0, UpstreamTokenKind::RefreshToken);
    }
    events.extend(tokens.into_iter().map(|token| {
        Event::from(UpstreamRevocationCompleted {
            user_id: user_id.clone(),
            server_id: server_id.clone(),
            generation: connection.generation,
            token,
            outcome: RevocationOutcome::NotRevocable {
                reason: format!("server {server_id} names no revocation_url"),
            },
            attempt: 0,
        })
    }));
    events
}

/// An attempt's outcome, accepted for a token still to revoke, as its next attempt.
pub(super) fn revocation_recorded(
    state: &State,
    revocation: &UpstreamRevocationCompleted,
) -> Result<(Vec<Event>, Answer), Refusal> {
    let waiting = state
        .upstream_revocation(
            &revocation.user_id,
            &revocation.server_id,
            revocation.generation,
        )
        .and_then(|pending| pending.token(revocation.token))
        .is_some_and(|token| revocation.attempt == token.attempts + 1);
    if !waiting {
        let which = match revocation.token {
            UpstreamTokenKind::AccessToken => "access token",
            UpstreamTokenKind::RefreshToken => "refresh token",
        };
        return Err(Refusal::RevocationSettled(
            revocation.server_id.clone(),
            which,
        ));
    }
    Ok((vec![revocation.clone().into()], Answer::Done))
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

    fn apply(state: &mut State, events: &[Event]) {
        for event in events {
            let head = Head {
                seq: state.head().seq + 1,
                hash: Hash([5; 32]),
                ts: Some(at()),
            };
            state.apply(head, event);
        }
    }

    /// `world()`, and alice connected to `revoking`, whose provider revokes (generation 1).
    fn revoking_world() -> State {
        let mut state = world();
        let mut registered = server("revoking", None);
        if let Event::ServerRegistered(ServerRegistered {
            auth: ServerAuth::Oauth(oauth),
            ..
        }) = &mut registered
        {
            oauth.revocation_url = Some("https://revoking.example/revoke".into());
        }
        let connected = ConnectionEstablished {
            user_id: UserId::from("alice"),
            server_id: ServerId::from("revoking"),
            access_token: wrapped("old"),
            refresh_token: Some(wrapped("old")),
            expires_at: None,
            scopes: vec![],
        };
        apply(&mut state, &[registered, connected.into()]);
        state
    }

    fn delete_command(server_id: &str) -> Command {
        Command::DeleteConnection {
            user_id: UserId::from("alice"),
            server_id: ServerId::from(server_id),
            by: Actor::User {
                user_id: UserId::from("alice"),
            },
        }
    }

    fn attempt(token: UpstreamTokenKind, attempt: u32, outcome: RevocationOutcome) -> Command {
        Command::RecordUpstreamRevocation(UpstreamRevocationCompleted {
            user_id: UserId::from("alice"),
            server_id: ServerId::from("revoking"),
            generation: 1,
            token,
            outcome,
            attempt,
        })
    }

    fn down() -> RevocationOutcome {
        RevocationOutcome::Failed {
            status: Some(503),
            reason: "the provider answered 503".into(),
        }
    }

    #[test]
    fn a_deleted_connection_without_revocation_url_records_its_tokens_not_revocable_at_once() {
        let mut state = revoking_world();
        let (events, _) = decide(&state, &delete_command("srv"), at())
            .unwrap_or_else(|refusal| unreachable!("{refusal}"));
        let reason = "server srv names no revocation_url".to_owned();
        let not_revocable = |token| {
            Event::from(UpstreamRevocationCompleted {
                user_id: UserId::from("alice"),
                server_id: ServerId::from("srv"),
                generation: 2,
                token,
                outcome: RevocationOutcome::NotRevocable {
                    reason: reason.clone(),
                },
                attempt: 0,
            })
        };
        assert_eq!(
            events[1..],
            [
                not_revocable(UpstreamTokenKind::RefreshToken),
                not_revocable(UpstreamTokenKind::AccessToken)
            ]
        );
        apply(&mut state, &events);
        assert_eq!(
            state.upstream_revocation(&UserId::from("alice"), &ServerId::from("srv"), 2),
            None,
            "nothing is left to try"
        );
    }

    #[test]
    fn upstream_revocation_attempts_are_taken_once_each_in_order_and_end_at_the_cap() {
        let mut state = revoking_world();
        let (events, _) = decide(&state, &delete_command("revoking"), at())
            .unwrap_or_else(|refusal| unreachable!("{refusal}"));
        assert_eq!(events.len(), 1, "the provider revokes: nothing decided yet");
        apply(&mut state, &events);
        let alice = UserId::from("alice");
        let revoking = ServerId::from("revoking");
        let pending = |state: &State| state.upstream_revocation(&alice, &revoking, 1).cloned();
        assert!(
            pending(&state).is_some_and(|p| p.access_token.is_some() && p.refresh_token.is_some())
        );

        // Alice connects again before the old tokens are revoked: they stay pending.
        let again = ConnectionEstablished {
            user_id: alice.clone(),
            server_id: revoking.clone(),
            access_token: wrapped("new"),
            refresh_token: None,
            expires_at: None,
            scopes: vec![],
        };
        apply(&mut state, &[again.into()]);
        assert!(pending(&state).is_some());

        let settled = Err(Refusal::RevocationSettled(
            revoking.clone(),
            "refresh token",
        ));
        let refresh = UpstreamTokenKind::RefreshToken;
        let decided = |state: &State, command: &Command| {
            decide(state, command, at()).map(|(events, _)| events)
        };
        assert_eq!(decided(&state, &attempt(refresh, 2, down())), settled);
        for n in 1..=writ_projections::UPSTREAM_REVOCATION_ATTEMPTS_MAX {
            let events = decided(&state, &attempt(refresh, n, down()))
                .unwrap_or_else(|refusal| unreachable!("attempt {n}: {refusal}"));
            apply(&mut state, &events);
            // The same attempt again (another node's): refused.
            assert_eq!(decided(&state, &attempt(refresh, n, down())), settled);
        }
        assert_eq!(
            pending(&state).map(|p| p.refresh_token.is_none()),
            Some(true),
            "given up after the last attempt"
        );
        let over = writ_projections::UPSTREAM_REVOCATION_ATTEMPTS_MAX + 1;
        assert_eq!(decided(&state, &attempt(refresh, over, down())), settled);

        let access = UpstreamTokenKind::AccessToken;
        let events =
            decided(&state, &attempt(access, 1, RevocationOutcome::Revoked)).unwrap_or_default();
        apply(&mut state, &events);
        assert_eq!(pending(&state), None, "both done: forgotten");
        assert_eq!(
            decided(&state, &attempt(access, 2, RevocationOutcome::Revoked)),
            Err(Refusal::RevocationSettled(revoking, "access token"))
        );
    }

    #[test]
    fn erasing_a_person_ends_their_connections_for_revocation() {
        let mut state = revoking_world();
        let erase = Command::EraseUser {
            user_id: UserId::from("alice"),
            by: Actor::System,
        };
        let (events, _) =
            decide(&state, &erase, at()).unwrap_or_else(|refusal| unreachable!("{refusal}"));
        let kinds: Vec<&str> = events.iter().map(|e| e.kind().name()).collect();
        assert_eq!(
            kinds,
            [
                "UserDeactivated",
                "ConnectionDeleted",
                "ConnectionDeleted",
                "UpstreamRevocationCompleted",
                "UpstreamRevocationCompleted",
                "UserErased"
            ]
        );
        apply(&mut state, &events);
        let alice = UserId::from("alice");
        assert!(
            state
                .upstream_revocation(&alice, &ServerId::from("revoking"), 1)
                .is_some()
        );
        assert!(state.connections_of_user(&alice).all(|c| !c.is_held()));
    }
}
